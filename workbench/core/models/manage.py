"""Import (a local folder, a hub cache folder, a GGUF file or a hub id), remove and rename registered models."""

from __future__ import annotations

import shutil
from fnmatch import fnmatch
from pathlib import Path

from ..errors import WorkbenchError
from ..staging import delete_folder
from ..registry import ModelRecord, Registry
from ..workspace import Workspace
from .adapters import is_adapter_folder, point_adapter_at_base
from .create import register_or_remove
from .folders import _read_config, _register_folder, count_parameters, staged_folder, weights_file
from .gguf import Progress, import_gguf, is_gguf_file
from .hub import MODEL_FILE_PATTERNS, cache_folder_snapshot, cached_snapshot, download
from .names import validate_name


def add_model(ws: Workspace, registry: Registry, name: str, source: str, copy: bool = True,
              progress: Progress | None = None) -> tuple[ModelRecord, str]:
    """Register a local Hugging Face folder (copied, or referenced in place), a `models--org--name` cache
    folder, a GGUF file, or a hub id (from the local Hugging Face cache when it is there, else downloaded).

    Returns the record and a sentence saying what was done."""
    validate_name(name)
    if registry.find_model(name):
        raise WorkbenchError(f"a model named '{name}' is already registered")
    path = Path(source).expanduser()
    if path.is_file():
        if not (is_gguf_file(path) or path.suffix.lower() == ".gguf"):
            raise WorkbenchError(f"{path} is neither a GGUF file nor a model folder")
        record = import_gguf(ws, registry, name, path, progress=progress)
        return record, f"converted {path.resolve()} into {record.path}"
    if path.is_dir():
        snapshot = cache_folder_snapshot(path.resolve())
        if snapshot is not None:
            return _add_local(ws, registry, name, snapshot, copy, meta={"hub_snapshot": str(snapshot)})
        return _add_local(ws, registry, name, path.resolve(), copy)
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or source.lower().endswith(".gguf"):
        raise WorkbenchError(f"{source} does not exist")
    snapshot = cached_snapshot(source)
    if snapshot is not None:
        record, _how = _add_local(ws, registry, name, snapshot, copy, meta={"hub_id": source})
        return record, f"imported {source} from the Hugging Face cache ({snapshot})"
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


def _add_local(ws: Workspace, registry: Registry, name: str, folder: Path, copy: bool,
               meta: dict | None = None) -> tuple[ModelRecord, str]:
    _check_loadable_folder(folder)
    if not copy:
        record = _register_folder(registry, name, folder, source="imported", referenced=True, meta=meta or {})
        return record, f"referenced {folder} in place (not copied)"
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith(".") and (
                    meta is None or any(fnmatch(item.name, pattern) for pattern in MODEL_FILE_PATTERNS)):
                shutil.copy2(item, staging / item.name)  # follows the cache's symlinks to their blobs
    record = register_or_remove(registry, target, lambda: _register_folder(registry, name, target,
                                                                            source="imported", meta=meta or {}))
    return record, f"copied {folder} into {target}"


def _add_from_hub(ws: Workspace, registry: Registry, name: str, repo_id: str) -> tuple[ModelRecord, str]:
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        download(repo_id, staging)

    def register():
        _check_loadable_folder(target)
        return _register_folder(registry, name, target, source="imported", meta={"hub_id": repo_id})

    record = register_or_remove(registry, target, register)
    return record, f"downloaded {repo_id} into {target}"


def remove_model(registry: Registry, name: str, delete_files: bool = False) -> str:
    """Unregister a model (refused while a queued or running job trains from it); with delete_files,
    delete its folder too: never a --reference'd model's files, never anything outside the workspace."""
    record = registry.get_model(name)
    children = [c.name for c in registry.children_of(name) if c.adapter]
    if children:
        raise WorkbenchError(f"'{name}' is the base of adapter(s) {', '.join(children)}; remove those first")
    outside = not Path(record.path).resolve().is_relative_to(registry.home.resolve())
    registry.remove_model(name)
    if delete_files and not record.referenced and not outside:
        try:
            delete_folder(record.path, registry.home, "the model folder")
        except WorkbenchError as error:
            raise WorkbenchError(f"removed '{name}' from the registry, but {error}") from None
        return f"removed '{name}' and deleted {record.path}"
    why = " (outside the workspace)" if delete_files and outside and not record.referenced else ""
    return f"removed '{name}' from the registry (files kept in {record.path}{why})"


def rename_model(ws: Workspace, registry: Registry, old: str, new: str) -> ModelRecord:
    """Rename a model (and its folder when it lives in models/); adapters on it follow by registry name,
    and their adapter_config.json is re-pointed at the moved folder so plain peft still loads them. The
    folder moves inside the registry's write transaction, so of two renames at once one moves it and
    the others are refused; if the registry then refuses, the folder is put back."""
    validate_name(new)
    record = registry.get_model(old)
    if registry.find_model(new):
        raise WorkbenchError(f"a model named '{new}' is already registered")
    moves = not record.referenced and Path(record.path) == ws.model_dir(old)
    new_path = str(ws.model_dir(new)) if moves else record.path
    moved = []

    def move() -> None:
        if ws.model_dir(new).exists():
            raise WorkbenchError(f"{ws.model_dir(new)} already exists")
        try:
            Path(record.path).rename(ws.model_dir(new))
        except FileNotFoundError:
            raise WorkbenchError(f"the folder of '{old}' ({record.path}) is gone; run `workbench doctor`") from None
        moved.append(True)

    try:
        renamed = registry.rename_model(old, new, new_path, move=move if moves else None)
    except BaseException:
        if moved:  # put the folder back: registry and disk stay in step
            Path(new_path).rename(record.path)
        raise
    for child in registry.children_of(new):
        if child.adapter and not child.referenced and is_adapter_folder(child.path):
            point_adapter_at_base(child.path, new_path)
    return renamed
