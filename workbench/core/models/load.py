"""Loading models: device and dtype, a folder (with its adapter base), and an in-memory cache."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..registry import Registry
from .folders import weights_file
from .names import one_line
from .tokenizer import load_tokenizer, quiet_transformers


def resolve_device(requested: str | None = None) -> str:
    """cuda, then mps, then cpu; an explicit request is checked."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise WorkbenchError(f"--device {requested}: CUDA is not available on this machine")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise WorkbenchError("--device mps: MPS is not available on this machine")
        if requested.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise WorkbenchError(f"unknown device '{requested}': use auto, cpu, cuda, cuda:N or mps")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(device: str, requested: str | None = None):
    """bf16 on GPUs that support it, fp32 elsewhere (CPU inference in bf16 is slower on most CPUs)."""
    import torch

    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if requested and requested != "auto":
        if requested not in names:
            raise WorkbenchError(f"unknown dtype '{requested}': use auto, fp32, bf16 or fp16")
        return names[requested]
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any
    device: str
    context_length: int
    chat_format: Any = None  # templates.ChatFormat: chat template (or None: plain text) and end tokens


def load_model_folder(folder: str | Path, device: str | None = None, dtype: str | None = None,
                      adapter_base: str | Path | None = None):
    """(model, tokenizer) from a folder: safetensors only, no remote code, eval mode, on the device."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    weights_file(folder)
    quiet_transformers()
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(resolved_device, dtype)
    base_folder = Path(adapter_base) if adapter_base else folder
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(base_folder), use_safetensors=True, trust_remote_code=False, dtype=torch_dtype,
        )
        if adapter_base:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder))
    except WorkbenchError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt folder raises many kinds of errors
        raise WorkbenchError(f"cannot load the model in {folder}: {one_line(error)}") from None
    model.to(resolved_device)
    model.eval()
    tokenizer_folder = folder if any(
        (folder / n).exists() for n in ("tokenizer.json", "vocab.json")) else base_folder
    return model, load_tokenizer(tokenizer_folder), resolved_device


class ModelCache:
    """Loaded models kept in memory, so chat and dialogue do not reload per message.

    Keyed by (name, sha256, device, dtype): a retrained or replaced model loads afresh."""

    def __init__(self, max_models: int = 3):
        self.max_models = max_models
        self._models: dict[tuple, LoadedModel] = {}
        self._lock = threading.Lock()
        # One load at a time: a chat's early load (when its model is picked) and the first message's
        # load of the same model meet here, and the second finds the model ready instead of loading twice.
        self._loading = threading.Lock()

    def get(self, registry: Registry, name: str, device: str | None = None, dtype: str | None = None) -> LoadedModel:
        record = registry.get_model(name)
        key = (record.name, record.sha256, device or "auto", dtype or "auto")
        with self._loading:
            return self._cached(key) or self._load(registry, record, key, device, dtype)

    def has(self, registry: Registry, name: str, device: str | None = None, dtype: str | None = None) -> bool:
        """Whether `name` is loaded already (no loading)."""
        record = registry.get_model(name)
        with self._lock:
            return (record.name, record.sha256, device or "auto", dtype or "auto") in self._models

    def _cached(self, key: tuple) -> LoadedModel | None:
        with self._lock:
            if key not in self._models:
                return None
            loaded = self._models.pop(key)
            self._models[key] = loaded  # most recently used last
            return loaded

    def _load(self, registry: Registry, record, key: tuple, device: str | None, dtype: str | None) -> LoadedModel:
        base = registry.get_model(record.parent).path if record.adapter else None
        model, tokenizer, resolved = load_model_folder(record.path, device, dtype, adapter_base=base)
        context = record.context_length or getattr(model.config, "max_position_embeddings", 1024)
        from ..templates import chat_format

        fmt = chat_format(tokenizer, record.path, getattr(model.generation_config, "eos_token_id", None))
        loaded = LoadedModel(record.name, model, tokenizer, resolved, context, fmt)
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.max_models:
                self._models.pop(next(iter(self._models)))
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
