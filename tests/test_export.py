"""`workbench export`: every format loads back in its runtime, and the registry records the lineage."""

from __future__ import annotations

import json

import pytest
import torch
from serve_helpers import make_tiny_chat_model

from workbench.cli import main


@pytest.fixture
def chat_ws(ctx, tmp_path):
    """The test workspace plus `tiny-chat`, a 2-layer Llama with a chat template."""
    from workbench.core.models import add_model

    folder = make_tiny_chat_model(ctx.ws.model_dir("tiny-neo"), tmp_path / "src" / "tiny-chat")
    add_model(ctx.ws, ctx.registry, "tiny-chat", str(folder))
    return ctx


def logits(folder, ids, **kwargs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs).eval()
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


IDS = torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]])


def test_bf16_export_is_registered_with_its_lineage(chat_ws, capsys):
    home = str(chat_ws.ws.home)
    assert main(["--home", home, "export", "tiny-chat", "--format", "bf16", "--register", "chat-bf16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["checks"]["max_logit_diff_reloaded"] == 0.0
    record = chat_ws.registry.get_model("chat-bf16")
    assert record.parent == "tiny-chat" and record.source == "exported"
    assert record.path == str(chat_ws.ws.model_dir("chat-bf16"))
    config = json.loads((chat_ws.ws.model_dir("chat-bf16") / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    exports = chat_ws.registry.get_model("tiny-chat").meta["exports"]
    assert [(e["format"], e["registered"]) for e in exports] == [("bf16", "chat-bf16")]
    expected = logits(chat_ws.ws.model_dir("tiny-chat"), IDS, dtype=torch.bfloat16)
    assert torch.equal(logits(record.path, IDS), expected)


def test_merged_adapter_equals_the_adapter_on_its_base(chat_ws, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.core.export import export_model
    from workbench.core.models import register_folder

    base = AutoModelForCausalLM.from_pretrained(str(chat_ws.ws.model_dir("tiny-chat")))
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = chat_ws.ws.model_dir("chat-lora")
    peft_model.save_pretrained(str(adapter_dir))
    register_folder(chat_ws.registry, "chat-lora", adapter_dir, source="fine-tuned", parent="tiny-chat")
    result = export_model(chat_ws, "chat-lora", "merged", tmp_path / "merged")
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(chat_ws.ws.model_dir("tiny-chat"))),
                                      str(adapter_dir)).eval()
    with torch.inference_mode():
        expected = fresh(input_ids=IDS).logits
    assert torch.allclose(logits(result.path, IDS), expected, atol=1e-5)
    assert (tmp_path / "merged" / "tokenizer.json").exists() or (tmp_path / "merged" / "vocab.json").exists()


@pytest.mark.parametrize("args, says", [
    (["tiny-neo", "--format", "merged", "--out", "OUT"], "not an adapter"),
    (["tiny-neo", "--format", "gguf", "--out", "OUT"], "supports Llama-family models"),
    (["tiny-chat", "--format", "onnx", "--register", "x"], "--register works for merged, fp16, bf16, int8"),
    (["tiny-chat", "--format", "fp16"], "give --out DIR"),
])
def test_unsupported_combinations_get_one_line(chat_ws, tmp_path, capsys, args, says):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    assert main(["--home", str(chat_ws.ws.home), "export", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "out").exists()


def test_int8_folder_loads_with_plain_transformers(chat_ws, tmp_path):
    from workbench.core.export import export_model

    result = export_model(chat_ws, "tiny-chat", "int8", tmp_path / "int8")
    checks = result.checks
    assert checks["bytes"] < checks["bf16_bytes"]
    assert abs(checks["perplexity_change"]) < 0.05
    bf16 = logits(chat_ws.ws.model_dir("tiny-chat"), IDS, dtype=torch.bfloat16)
    int8 = logits(tmp_path / "int8", IDS, device_map="cpu")
    assert (int8 - bf16).abs().max() < 0.05 * bf16.abs().max()


@pytest.mark.parametrize("kind", ["q8_0", "f16"])
def test_gguf_loads_back_in_transformers_with_an_ollama_modelfile(chat_ws, tmp_path, kind):
    from transformers import AutoTokenizer

    from workbench.core.export import export_model

    out = tmp_path / kind
    result = export_model(chat_ws, "tiny-chat", "gguf", out, gguf_type=kind)
    assert abs(result.checks["perplexity_change"]) < 0.05
    gguf_file = out / f"tiny-chat-{kind}.gguf"
    source = logits(chat_ws.ws.model_dir("tiny-chat"), IDS, dtype=torch.float32)
    loaded = logits(out, IDS, gguf_file=gguf_file.name, dtype=torch.float32)
    assert (loaded - source).abs().max() < (1e-2 if kind == "f16" else 0.05) * source.abs().max()
    tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=gguf_file.name)
    assert tokenizer("Alice was here")["input_ids"] == AutoTokenizer.from_pretrained(
        str(chat_ws.ws.model_dir("tiny-chat")))("Alice was here")["input_ids"]
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{gguf_file.name}\n")
    assert 'TEMPLATE """{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|endoftext|>\n{{ end }}<|assistant|>\n"""' \
        in modelfile
    assert 'PARAMETER stop "<|endoftext|>"' in modelfile


@pytest.mark.slow
def test_onnx_logits_equal_transformers(chat_ws, tmp_path):
    import numpy as np
    import onnxruntime

    from workbench.core.export import export_model

    result = export_model(chat_ws, "tiny-chat", "onnx", tmp_path / "onnx")
    assert result.checks["max_logit_diff"] < 1e-2
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    got = session.run(["logits"], {"input_ids": IDS.numpy(), "attention_mask": np.ones_like(IDS.numpy())})[0]
    expected = logits(chat_ws.ws.model_dir("tiny-chat"), IDS, dtype=torch.float32).numpy()
    assert np.abs(got - expected).max() < 1e-2
