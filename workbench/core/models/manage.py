"""Import (a local folder or a hub id), remove and rename registered models."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import WorkbenchError
from ..registry import ModelRecord, Registry
from ..workspace import Workspace
from .folders import _read_config, _register_folder, count_parameters, staged_folder, weights_file
from .names import one_line, validate_name


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
        text = one_line(error)
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
