"""A training run's checkpoints: what goes into one (the registrable model folder, the fp32 master
weights where the folder is not fp32, optimizer, RNG states, step and settings) and how a resume loads it
back, refusing a checkpoint whose settings differ. checkpoints.py owns the folder format (atomic write,
completion marker, which one is newest); this module fills it and reads it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..errors import WorkbenchError
from .config import ADAPTER_METHODS, TrainConfig
from .run_setup import TrainRun, quiet_hf


def export_model(run: TrainRun, config: TrainConfig, folder: Path) -> None:
    """The registrable model folder: full weights or a PEFT adapter, tokenizer files, and for instruction
    tuning the chat template it was trained with."""
    from ..templates import ship_template

    from .precision import save_full_model

    folder.mkdir(parents=True, exist_ok=True)
    with quiet_hf():  # no "Writing model shards" bar inside our own
        if config.method in ADAPTER_METHODS:
            run.model.save_pretrained(str(folder), safe_serialization=True)
        else:  # a full model is saved in its base's dtype (fp32 master weights stay in the checkpoint)
            save_full_model(run.model, folder, run.extra["base_dtype"])
    run.tokenizer.save_pretrained(str(folder))
    if config.objective == "instruct":
        ship_template(run.tokenizer, folder)


def save_checkpoint(run: TrainRun, config: TrainConfig, run_dir: Path, step: int, state: dict) -> Path:
    import torch

    from .checkpoints import MODEL_FOLDER, STATE_FILE, write_checkpoint
    from .precision import save_master

    def write(folder: Path) -> None:
        export_model(run, config, folder / MODEL_FOLDER)
        if config.method not in ADAPTER_METHODS and run.extra["base_dtype"] != "float32":
            save_master(run.model, folder)
        torch.save(run.optimizer.state_dict(), folder / "optimizer.pt")
        rng = {"torch": torch.get_rng_state(), "python": list(random.getstate())}
        try:
            import numpy as np

            kind, keys, pos, has_gauss, gauss = np.random.get_state()
            rng["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss]
        except ImportError:
            pass
        if torch.cuda.is_available() and run.device.startswith("cuda"):
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, folder / "rng.pt")
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2))

    return write_checkpoint(run_dir, step, write, config.keep_checkpoints)


RESUME_KEYS = ("base_model", "dataset", "objective", "letter", "kl_positions", "method", "freeze", "lora_r",
               "lora_alpha", "lora_dropout", "lora_targets", "batch", "seq", "grad_accum", "seed", "sampling")


def load_checkpoint(run: TrainRun, config: TrainConfig, checkpoint: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    from .checkpoints import MODEL_FOLDER, read_state
    from .precision import load_master

    state = read_state(checkpoint)
    saved = state.get("config", {})
    changed = [k for k in RESUME_KEYS if k in saved and saved[k] != config.to_dict()[k]]
    if changed:
        raise WorkbenchError(f"cannot resume from {checkpoint}: settings differ ({', '.join(changed)})")
    folder = checkpoint / MODEL_FOLDER
    if config.method in ADAPTER_METHODS:
        from peft import set_peft_model_state_dict

        weights = load_file(str(folder / "adapter_model.safetensors"), device=run.device)
        result = set_peft_model_state_dict(run.model, weights)
        missing = [k for k in getattr(result, "unexpected_keys", [])]
        if missing:
            raise WorkbenchError(f"checkpoint {checkpoint} does not fit this model ({missing[0]})")
    else:
        weights: dict = {}
        for path in sorted(folder.glob("*.safetensors")):
            weights.update(load_file(str(path), device=run.device))
        result = run.model.load_state_dict(weights, strict=False)
        names = {n for n, p in run.model.named_parameters() if p.requires_grad}
        lost = sorted(names & set(result.missing_keys))
        if lost or result.unexpected_keys:
            raise WorkbenchError(f"checkpoint {checkpoint} does not fit this model "
                                 f"({(lost or result.unexpected_keys)[0]})")
        load_master(run.model, checkpoint, run.device)  # the exact fp32 weights when the model folder is bf16
    run.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=run.device,
                                             weights_only=True))
    rng = torch.load(checkpoint / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    if "numpy" in rng:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
    if "cuda" in rng and run.device.startswith("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state
