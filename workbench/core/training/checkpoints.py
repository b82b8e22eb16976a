"""Checkpoints: atomic folders run_dir/checkpoints/step-N/, newest complete one wins on resume.

A checkpoint is written under a temporary name beside its target, every file fsynced, the COMPLETE marker
written last, then renamed into place (and the parent folder fsynced). A crash at any point leaves either
no step-N folder or a complete one; stale temporary folders are swept on the next save.

Layout of step-N/:
  model/            the model as it would be registered: save_pretrained folder (full weights, or a PEFT
                    adapter) + tokenizer files (+ the instruction template)
  optimizer.pt      optimizer.state_dict()           (loaded with torch.load(weights_only=True))
  rng.pt            torch / cuda / python / numpy RNG states
  state.json        step, sampler and scheduler state, settings, losses so far
  COMPLETE          marker: the folder is whole
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from ..errors import WorkbenchError

COMPLETE = "COMPLETE"
CHECKPOINTS = "checkpoints"
MODEL_FOLDER = "model"
STATE_FILE = "state.json"
_STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first, as (step, folder)."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and (child / COMPLETE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def read_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def write_checkpoint(run_dir: str | Path, step: int, write: Callable[[Path], None], keep: int) -> Path:
    """Write step-`step` atomically with `write(folder)` filling it; keep the newest `keep` ones."""
    parent = checkpoints_dir(run_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(".step-*.tmp-*"):  # left by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)
    target = parent / f"step-{step}"
    temp = parent / f".step-{step}.tmp-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        write(temp)
        (temp / COMPLETE).write_text(json.dumps({"step": step}))
        _fsync_tree(temp)
        if target.exists():  # same step saved again (e.g. stopped right after a periodic save)
            old = parent / f".step-{step}.old-{os.getpid()}"
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        temp.rename(target)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep)
    return target


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (incomplete ones are never resumed)."""
    found = list_checkpoints(run_dir)
    removed = []
    for _, folder in found[: max(0, len(found) - max(1, keep))]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def resolve_checkpoint(run_dir_or_checkpoint: str | Path) -> Path:
    path = Path(run_dir_or_checkpoint)
    if (path / COMPLETE).is_file():
        return path
    latest = latest_complete_checkpoint(path)
    if latest is None:
        raise WorkbenchError(f"no complete checkpoint in {path}")
    return latest


def register_result(ctx, config, run_dir_or_checkpoint: str | Path, job_id: int | None = None):
    """Register the model saved in a checkpoint (the newest complete one of a run folder) as config.out.

    LoRA runs register an adapter whose parent is the base, or a merged full model with config.merge."""
    from ..models import register_folder, staged_folder, validate_name

    checkpoint = resolve_checkpoint(run_dir_or_checkpoint)
    state = read_state(checkpoint)
    source = checkpoint / MODEL_FOLDER
    validate_name(config.out)
    if ctx.registry.find_model(config.out):
        raise WorkbenchError(f"a model named '{config.out}' is already registered")
    base = ctx.registry.get_model(config.base_model)
    target = ctx.ws.model_dir(config.out)
    with staged_folder(target) as staging:
        if config.method in ("lora", "dora") and config.merge:
            _merge_adapter(base.path, source, staging)
        else:
            for item in source.iterdir():
                if item.is_file():
                    shutil.copy2(item, staging / item.name)
    meta = {
        "objective": config.objective, "method": config.method, "steps": state.get("step"),
        "final_train_loss": state.get("train_loss"), "final_val_loss": state.get("val_loss"),
        "val_perplexity": state.get("val_perplexity"), "settings": config.to_dict(),
        "checkpoint": str(checkpoint), "stopped_early": state.get("step") != config.steps,
    }
    if config.objective == "kl-letter":
        meta["letter"] = config.letter
    from ..model_card import write_model_card

    write_model_card(target, config, meta, base.name)  # README.md with the resolved settings
    try:
        return register_folder(ctx.registry, config.out, target, source="fine-tuned", parent=base.name,
                               dataset=config.dataset, job_id=job_id, meta=meta)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _merge_adapter(base_path: str, adapter_folder: Path, out: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_folder))
    merged = model.merge_and_unload()
    from .precision import save_full_model, saved_dtype

    save_full_model(merged, out, saved_dtype(base_path))  # merged in fp32, saved in the base's dtype
    for item in adapter_folder.iterdir():  # tokenizer files and the template
        if item.is_file() and not item.name.startswith(("adapter_", "README")):
            shutil.copy2(item, out / item.name)
