"""Precision: the autocast dtype of a run, the dtype weights train in, and the dtype the result is saved in.

Decision (why fp32 master weights): full fine-tunes and frozen-part runs keep their trainable weights in
fp32 while the matmuls run under bf16 autocast. AdamW updates are ~lr x 1 (1e-5..1e-3 of a weight): in bf16
(8 mantissa bits, a relative step of 2^-8 = 0.4 %) most of them would round away, so a bf16-resident
model stops learning at small learning rates. The result is then saved in the base's own dtype (a bf16
base saves bf16, so the tuned model is the same size and loads the same way as its base); checkpoints
also keep the fp32 master copy (master.safetensors) so a resumed run continues from exactly the weights
the uninterrupted one would have. LoRA / DoRA keep the frozen base in its stored dtype when that is the
autocast dtype (no fp32 copy of weights that never change; bf16 x bf16 is what autocast computes anyway),
except the embeddings and norms, kept fp32 as in a full fine-tune so the residual stream stays fp32; the
adapters themselves are fp32 (peft's default).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import WorkbenchError

MASTER_FILE = "master.safetensors"
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def resolve_precision(precision: str, device: str):
    """The autocast dtype (None = plain fp32). auto: bf16 on GPUs that have it and on CPUs with native bf16."""
    import torch

    kind = device.split(":")[0]
    if precision == "fp32":
        return None
    if precision == "bf16":
        if kind == "mps":
            raise WorkbenchError("--precision bf16 is not supported on mps; use fp32")
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise WorkbenchError("--precision bf16: this GPU does not support bf16; use fp32")
        return torch.bfloat16
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if kind == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return torch.bfloat16 if native else None
    return None


def saved_dtype(folder: str | Path) -> str:
    """The dtype a model folder stores its weights in ("float32", "bfloat16", ...): config.json's dtype
    (torch_dtype in older folders), else the first floating tensor of its safetensors files."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        config = {}
    named = config.get("dtype") or config.get("torch_dtype")
    if isinstance(named, str) and named in _SAFETENSORS_DTYPES.values():
        return named
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
        except (OSError, struct.error, ValueError):
            continue
        for key, info in header.items():
            if key != "__metadata__" and info.get("dtype") in _SAFETENSORS_DTYPES:
                return _SAFETENSORS_DTYPES[info["dtype"]]
    return "float32"


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def keep_frozen_in(model, dtype) -> int:
    """Cast frozen linear weights (not embeddings, norms or the head) to `dtype`; returns how many.

    Used under LoRA with bf16 autocast on a bf16 base: the frozen matmul weights are read in bf16 anyway."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    count = 0
    for module in model.modules():
        if module is head or not (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"):
            continue
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad and param.dtype != dtype:
                param.data = param.data.to(dtype)
                count += 1
    return count


def save_full_model(model, folder: Path, dtype_name: str) -> None:
    """save_pretrained with the weights cast to `dtype_name` (the training copy stays as it is)."""
    import torch

    dtype = torch_dtype(dtype_name)
    if all(p.dtype == dtype for p in model.parameters()):
        model.save_pretrained(str(folder), safe_serialization=True)
        return
    state, cast = {}, {}
    for key, value in model.state_dict().items():  # tied weights stay one tensor (saved once)
        if value.is_floating_point():
            if value.data_ptr() not in cast:
                cast[value.data_ptr()] = value.to(dtype)
            value = cast[value.data_ptr()]
        state[key] = value
    model.save_pretrained(str(folder), safe_serialization=True, state_dict=state)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = dtype_name  # save_pretrained writes the training copy's dtype (float32)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_master(model, folder: Path) -> None:
    """The fp32 trainable weights beside a checkpoint whose model folder is stored in a narrower dtype."""
    from safetensors.torch import save_file

    weights = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(folder / MASTER_FILE))


def load_master(model, folder: Path, device: str) -> bool:
    from safetensors.torch import load_file

    path = folder / MASTER_FILE
    if not path.is_file():
        return False
    weights = load_file(str(path), device=device)
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise WorkbenchError(f"checkpoint {folder} does not fit this model ({missing[0]})")
    import torch

    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return True
