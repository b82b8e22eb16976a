"""Model folders: weights, hashes, configs, parameter counts; staging a folder; registering one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..staging import staged_folder  # noqa: F401 - re-exported: models and data stage the same way
from ..registry import ModelRecord, Registry
from .adapters import point_adapter_at_base
from .names import PICKLE_WEIGHTS, WEIGHT_FILES, one_line, validate_name


def weights_file(folder: Path) -> Path:
    """The safetensors weights of a folder; pickle-only checkpoints are refused, saying why."""
    if not folder.is_dir():
        raise WorkbenchError(f"model folder {folder} does not exist")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    if shards:
        return shards[0]
    pickles = [name for name in PICKLE_WEIGHTS if (folder / name).exists()]
    if pickles:
        raise WorkbenchError(
            f"{folder} only has {pickles[0]}: pickle weights can run arbitrary code when loaded, so "
            "workbench loads safetensors only (convert it with `save_pretrained(safe_serialization=True)`)"
        )
    raise WorkbenchError(f"{folder} has no model weights (model.safetensors)")


def weights_sha256(folder: Path) -> str:
    """sha256 over every safetensors file of the folder, in name order."""
    weights_file(folder)  # validates
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_config(folder: Path) -> dict:
    config_path = folder / "config.json"
    if not (folder / "adapter_config.json").exists() and not config_path.is_file():
        raise WorkbenchError(f"{folder} is not a model folder (no config.json)")
    name = "adapter_config.json" if (folder / "adapter_config.json").exists() else "config.json"
    try:
        config = json.loads((folder / name).read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise WorkbenchError(f"{folder}: unreadable config ({one_line(error)})") from None
    if not isinstance(config, dict):
        raise WorkbenchError(f"{folder / name} must hold a JSON object, not a {type(config).__name__}")
    return config


def arch_of(config: dict) -> str:
    model_type = config.get("model_type", "unknown")
    return {"gpt_neo": "gpt-neo", "gpt2": "gpt2", "gpt_neox": "gpt-neox"}.get(model_type, model_type)


def context_of(config: dict) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if config.get(key):
            return int(config[key])
    return 1024


def count_parameters(folder: Path) -> int:
    """Parameter count read from the safetensors headers (no torch needed)."""
    import struct

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > path.stat().st_size - 8:
                    raise ValueError("header length beyond the end of the file")
                header = json.loads(handle.read(length))
        except (struct.error, ValueError, UnicodeDecodeError, RecursionError) as error:
            raise WorkbenchError(f"{path} is not a valid safetensors file ({one_line(error)})") from None
        if not isinstance(header, dict):
            raise WorkbenchError(f"{path} is not a valid safetensors file (its header is not a JSON object)")
        for key, info in header.items():
            if key == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                raise WorkbenchError(f"{path} is not a valid safetensors file (tensor '{key}' has shape "
                                     f"{shape!r}; a shape is a list of non-negative integers)")
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total




def _register_folder(registry: Registry, name: str, folder: Path, source: str, parent: str | None = None,
                     referenced: bool = False, **extra: Any) -> ModelRecord:
    config = _read_config(folder)
    adapter = (folder / "adapter_config.json").exists()
    if adapter:
        base = registry.get_model(parent) if parent else None
        arch = base.arch if base else "adapter"
        context = base.context_length if base else 0
        if base is not None and not referenced:
            point_adapter_at_base(folder, base.path)  # so plain peft finds the base too
    else:
        arch, context = arch_of(config), context_of(config)
    record = ModelRecord(
        name=name, path=str(folder), arch=arch, params=count_parameters(folder), context_length=context,
        source=source, parent=parent, sha256=weights_sha256(folder), adapter=adapter,
        referenced=referenced, **extra,
    )
    return registry.add_model(record)


def register_folder(registry: Registry, name: str, folder: Path, source: str, **extra: Any) -> ModelRecord:
    """Register a complete model folder already inside the workspace (training results use this)."""
    validate_name(name)
    return _register_folder(registry, name, folder, source, **extra)
