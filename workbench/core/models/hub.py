"""The Hugging Face hub cache: finding a cached model offline, cache folders as local sources, downloads."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WorkbenchError
from .names import one_line

# What a model folder needs: weights, configs, tokenizer files, chat templates (no pickles, no README).
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps models: $HF_HUB_CACHE, else $HF_HOME/hub, else its default.

    Read from the environment at call time (huggingface_hub fixes its constants when first imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of `repo_id`'s cached snapshot (its `main` revision), or None when it is not cached."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, cache_dir=str(hub_cache_dir()), local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a half-cached repo or a bad id: all mean "not here"
        return None


def cache_folder_snapshot(folder: Path) -> Path | None:
    """For a `models--org--name` cache folder: the snapshot `refs/main` names, else the newest one."""
    snapshots = folder / "snapshots"
    if not folder.name.startswith("models--") or not snapshots.is_dir():
        return None
    ref = folder / "refs" / "main"
    if ref.is_file():
        chosen = snapshots / ref.read_text().strip()
        if chosen.is_dir():
            return chosen
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise WorkbenchError(f"{folder} is a Hugging Face cache folder without any snapshot")
    return found[-1]


def download(repo_id: str, target: Path) -> None:
    """Download `repo_id`'s model files into `target`; one clear line when the hub cannot be reached."""
    from huggingface_hub import snapshot_download

    looked = f"it is not in the Hugging Face cache ({hub_cache_dir()})"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise WorkbenchError(f"cannot import '{repo_id}': {looked} and HF_HUB_OFFLINE is set; "
                             "pass a local folder, a models--org--name cache folder or a GGUF file instead")
    try:
        snapshot_download(repo_id, local_dir=str(target), allow_patterns=MODEL_FILE_PATTERNS)
    except Exception as error:  # noqa: BLE001 - network and hub errors come in many types
        text = one_line(error)
        if any(word in text.lower() for word in ("connect", "resolve", "offline", "network", "timed out")):
            raise WorkbenchError(f"cannot import '{repo_id}': {looked} and the hub cannot be reached; pass a "
                                 "local folder, a models--org--name cache folder or a GGUF file instead") from None
        raise WorkbenchError(f"cannot download '{repo_id}': {text}") from None
