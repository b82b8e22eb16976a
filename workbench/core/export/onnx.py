"""ONNX export through torch.onnx (the dynamo exporter): fp32 logits of (input_ids, attention_mask).

The graph has no KV-cache inputs (a forward over the whole sequence), with dynamic batch and sequence
axes. It is checked in onnxruntime against transformers on the probe text: logits must agree to 1e-2.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import WorkbenchError
from .hf import load_source

TOLERANCE = 1e-2
ONNX_FILE = "model.onnx"


def export_onnx(registry, record, staging: Path, text: str) -> dict:
    import importlib.util

    import torch

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise WorkbenchError(f"--format onnx needs {', '.join(missing)} (pip install 'workbench[export]')")
    model, tokenizer, source_folder = load_source(registry, record, "fp32")

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    example = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:16]] * 2)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        program = torch.onnx.export(
            LogitsOnly(model).eval(), (example, torch.ones_like(example)), dynamo=True, verbose=False,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        program.save(str(staging / ONNX_FILE), external_data=True)
    except Exception as error:  # noqa: BLE001 - the exporter fails in many ways; say which model and why
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkbenchError(f"torch.onnx could not export '{record.name}' ({model.config.model_type}): "
                             f"{first}") from None
    tokenizer.save_pretrained(str(staging))
    model.config.save_pretrained(str(staging))
    if (source_folder / "generation_config.json").exists():
        shutil.copy2(source_folder / "generation_config.json", staging / "generation_config.json")
    diff = max_logit_difference(staging / ONNX_FILE, model, tokenizer, text)
    if diff > TOLERANCE:
        raise WorkbenchError(f"the ONNX export's logits differ from transformers' by {diff:.3g} (more than "
                             f"{TOLERANCE}); not kept")
    return {"max_logit_diff": diff, "tolerance": TOLERANCE, "file": ONNX_FILE,
            "bytes": sum(p.stat().st_size for p in staging.iterdir() if p.is_file())}


def max_logit_difference(path: Path, model, tokenizer, text: str) -> float:
    """Largest |logit difference| between onnxruntime and transformers on two left-padded probe rows."""
    import numpy as np
    import onnxruntime
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:48]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    short = ids[:30]
    input_ids = torch.tensor([ids, [pad] * (len(ids) - len(short)) + short])
    mask = torch.tensor([[1] * len(ids), [0] * (len(ids) - len(short)) + [1] * len(short)])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.inference_mode():
        expected = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.float().numpy()
    real = mask.numpy().astype(bool)  # padded positions have no defined logits
    return float(np.abs(got - expected)[real].max())
