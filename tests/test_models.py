"""Models: create from a config, import a saved folder, load, refuse pickle and broken folders."""

import shutil

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.models import (ModelCache, ModelShape, add_model, create_model, remove_model,
                                   rename_model, validate_name, weights_sha256)

SMALL = ModelShape(layers=1, hidden=32, heads=2, context=64)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "has space", "x" * 101])
def test_invalid_names_are_refused(bad):
    with pytest.raises(WorkbenchError, match="invalid model name"):
        validate_name(bad)


def test_starter_model_is_registered_with_its_facts(ctx):
    record = ctx.registry.get_model("tiny-neo")
    assert record.arch == "gpt-neo" and record.source == "created" and record.context_length == 256
    assert record.params > 1_000_000
    assert record.sha256 == weights_sha256(ctx.ws.model_dir("tiny-neo"))


@pytest.mark.parametrize("arch", ["gpt-neo", "gpt2"])
def test_new_model_loads_with_gpt2_tokenizer(ctx, arch):
    record = create_model(ctx.ws, ctx.registry, f"small-{arch}", arch, SMALL)
    loaded = ModelCache().get(ctx.registry, record.name)
    assert len(loaded.tokenizer) == 50257
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "<|endoftext|>"
    assert loaded.context_length == 64 and loaded.device == "cpu"


def test_taken_name_and_bad_shape_are_refused(ctx):
    with pytest.raises(WorkbenchError, match="already registered"):
        create_model(ctx.ws, ctx.registry, "tiny-neo")
    with pytest.raises(WorkbenchError, match="multiple of --heads"):
        create_model(ctx.ws, ctx.registry, "odd", "gpt-neo", ModelShape(1, 30, 4, 64))
    assert not ctx.ws.model_dir("odd").exists()


def test_add_copies_or_references_a_saved_folder(ctx, tmp_path):
    source = tmp_path / "saved"
    shutil.copytree(ctx.ws.model_dir("tiny-neo"), source)
    copied, how = add_model(ctx.ws, ctx.registry, "copy", str(source))
    assert "copied" in how and copied.path == str(ctx.ws.model_dir("copy"))
    referenced, how = add_model(ctx.ws, ctx.registry, "ref", str(source), copy=False)
    assert "referenced" in how and referenced.path == str(source) and referenced.referenced
    assert copied.sha256 == referenced.sha256 == ctx.registry.get_model("tiny-neo").sha256
    ModelCache().get(ctx.registry, "copy")  # loadable


def test_pickle_only_checkpoint_is_refused_saying_why(ctx, tmp_path):
    source = tmp_path / "pickled"
    shutil.copytree(ctx.ws.model_dir("tiny-neo"), source)
    (source / "model.safetensors").rename(source / "pytorch_model.bin")
    with pytest.raises(WorkbenchError, match="pickle"):
        add_model(ctx.ws, ctx.registry, "pickled", str(source))
    assert ctx.registry.find_model("pickled") is None and not ctx.ws.model_dir("pickled").exists()


def test_missing_and_corrupt_folders_are_refused(ctx, tmp_path):
    with pytest.raises(WorkbenchError, match="does not exist"):
        add_model(ctx.ws, ctx.registry, "gone", str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(ctx.ws.model_dir("tiny-neo"), broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WorkbenchError, match="not a valid safetensors"):
        add_model(ctx.ws, ctx.registry, "broken", str(broken), copy=False)
    assert ctx.registry.find_model("broken") is None


def test_broken_weights_after_registration_fail_to_load_with_one_line(ctx):
    create_model(ctx.ws, ctx.registry, "fragile", "gpt-neo", SMALL)
    (ctx.ws.model_dir("fragile") / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WorkbenchError, match="cannot load the model"):
        ModelCache().get(ctx.registry, "fragile")


def test_offline_hub_id_gives_one_clear_line(ctx, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WorkbenchError, match="cannot import 'gpt2': it is not in the Hugging Face cache") as error:
        add_model(ctx.ws, ctx.registry, "hub", "gpt2")
    assert str(tmp_path / "empty-cache") in str(error.value) and "\n" not in str(error.value)
    assert not ctx.ws.model_dir("hub").exists()


def test_rename_and_remove(ctx):
    create_model(ctx.ws, ctx.registry, "old", "gpt-neo", SMALL)
    rename_model(ctx.ws, ctx.registry, "old", "new")
    assert ctx.ws.model_dir("new").exists() and not ctx.ws.model_dir("old").exists()
    assert "deleted" in remove_model(ctx.registry, "new", delete_files=True)
    assert ctx.registry.find_model("new") is None and not ctx.ws.model_dir("new").exists()


def test_cache_returns_the_same_loaded_model(ctx):
    cache = ModelCache()
    assert cache.get(ctx.registry, "tiny-neo") is cache.get(ctx.registry, "tiny-neo")
