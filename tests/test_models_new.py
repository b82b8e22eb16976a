"""`models new --arch` for any causal LM type, `--tokenizer`, and adapters that keep finding their base."""

from __future__ import annotations

import json

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.models import ModelShape, create_model

SHAPE = ModelShape(layers=2, hidden=32, heads=4, context=64)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma2", "phi3", "gpt-neox", "mistral", "gemma3_text",
                                  "gpt2", "gpt-neo"])
def test_any_causal_arch_takes_the_shape(ctx, arch):
    import torch
    from transformers import AutoModelForCausalLM

    record = create_model(ctx.ws, ctx.registry, f"m-{arch.replace('_', '-')}", arch, SHAPE)
    model = AutoModelForCausalLM.from_pretrained(record.path)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 32, 4)
    assert record.context_length == 64 and record.arch == arch
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50257)


def test_unknown_or_unsized_arch_is_one_clear_line(ctx):
    with pytest.raises(WorkbenchError, match="unknown architecture 'nonsense'.*llama") as error:
        create_model(ctx.ws, ctx.registry, "x", "nonsense", SHAPE)
    assert "\n" not in str(error.value)
    with pytest.raises(WorkbenchError, match="not a causal language model"):
        create_model(ctx.ws, ctx.registry, "x", "t5", SHAPE)
    with pytest.raises(WorkbenchError, match="num_attention_heads"):
        create_model(ctx.ws, ctx.registry, "x", "mamba", SHAPE)
    assert ctx.registry.find_model("x") is None and not ctx.ws.model_dir("x").exists()


def test_tokenizer_of_a_registered_model_with_its_template(ctx, chat_tokenizer_dir, tmp_path):
    import shutil

    from workbench.core.models import load_tokenizer

    donor = create_model(ctx.ws, ctx.registry, "donor", "llama", SHAPE)
    for item in (ctx.ws.model_dir("donor")).iterdir():  # give the donor SmolLM2's tokenizer and template
        if item.name.startswith(("tokenizer", "vocab", "merges", "special")):
            item.unlink()
    for item in chat_tokenizer_dir.iterdir():
        shutil.copy2(item, ctx.ws.model_dir("donor") / item.name)
    record = create_model(ctx.ws, ctx.registry, "chatty", "qwen3", SHAPE, tokenizer=donor.name)
    folder = ctx.ws.model_dir("chatty")
    assert (folder / "chat_template.jinja").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == 49152 and config["eos_token_id"] == 2
    tokenizer = load_tokenizer(folder)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "<|im_start|>")
    assert record.meta["tokenizer_from"] == "donor"


def test_cli_new_with_arch_and_a_bad_one(home):
    from test_models_import import workbench

    result = workbench(home, "models", "new", "tiny-llama", "--arch", "llama", "--layers", "1", "--hidden", "32",
                       "--heads", "4", "--context", "64", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["arch"] == "llama"
    result = workbench(home, "models", "new", "bad", "--arch", "nonsense")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "llama" in result.stderr


# ---------------------------------------------------------------- adapters and their base


def test_adapter_loads_in_plain_peft_and_after_its_base_is_renamed(ctx, tmp_path):
    import torch
    from peft import AutoPeftModelForCausalLM

    from test_training import cfg, run
    from workbench.core import data
    from workbench.core.models import ModelCache, rename_model

    create_model(ctx.ws, ctx.registry, "t1", "gpt-neo", ModelShape(1, 32, 2, 64))
    text = tmp_path / "text.txt"
    text.write_text("the queen said to alice off with her head. " * 300)
    data.add_dataset(ctx, "words", text)
    result, _ = run(ctx, cfg(method="lora", out="ad", steps=2, eval_every=0, lora_dropout=0.0), tmp_path / "run")
    folder = result.model.path
    ids = torch.tensor([[5, 6, 7, 8]])

    def logits(model):
        with torch.no_grad():
            return model(ids).logits

    ours = logits(ModelCache().get(ctx.registry, "ad", device="cpu", dtype="fp32").model)
    assert torch.allclose(logits(AutoPeftModelForCausalLM.from_pretrained(folder)), ours, atol=1e-5)

    rename_model(ctx.ws, ctx.registry, "t1", "t1-renamed")
    assert ctx.registry.get_model("ad").parent == "t1-renamed" and not ctx.ws.model_dir("t1").exists()
    assert torch.allclose(logits(ModelCache().get(ctx.registry, "ad", device="cpu", dtype="fp32").model), ours,
                          atol=1e-5)
    base = json.loads((ctx.ws.model_dir("ad") / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(ctx.ws.model_dir("t1-renamed").resolve())
    assert torch.allclose(logits(AutoPeftModelForCausalLM.from_pretrained(folder)), ours, atol=1e-5)
