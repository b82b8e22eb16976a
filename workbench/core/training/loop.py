"""The training loop: one function, `train`, used in the foreground by the CLI and in jobs (also under torchrun).

Flow: check the settings (before any work) -> load the base in fp32 (precision.py says why and what is
saved) -> apply the method -> build the
objective's batch source -> resume from the newest complete checkpoint if asked -> steps of AdamW with the
schedule, gradient accumulation and clipping under bf16 autocast where it pays -> validation every
eval_every steps -> checkpoints every save_every steps and at the end -> register the result.

Determinism: batch i of the run is a pure function of (seed, i), and the RNG is re-seeded from (seed, step,
rank) at the start of every step, so a resumed run repeats the uninterrupted one exactly.

DDP: under torchrun (WORLD_SIZE > 1) every rank builds the same global batch and takes its slice; losses
are sums normalised by the global count of scored tokens, so N processes with batch/N each compute the
same update as one process with the whole batch. Rank 0 alone reports, saves and registers.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import WorkbenchError
from ..registry import ModelRecord
from .config import ADAPTER_METHODS, TrainConfig

MAX_EVAL_ITEMS = 64  # validation uses at most this many blocks (or records) of the val split


@dataclass
class TrainResult:
    model: ModelRecord | None
    steps_done: int
    final_train_loss: float | None
    final_val_loss: float | None
    stopped: bool = False
    last_checkpoint: str | None = None


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    created: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _say(dist: _Dist, message: str) -> None:
    if dist.main:
        print(message, file=sys.stderr, flush=True)


def _setup_distributed(device_request: str | None) -> tuple[_Dist, str]:
    import torch

    from ..models import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    dist = _Dist(world=world, rank=int(os.environ.get("RANK", "0") or 0),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0") or 0))
    device = resolve_device(device_request)
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(dist.local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
        dist.created = True
    return dist, device


def _all_reduce(values: list[float], dist: _Dist, device: str) -> list[float]:
    if dist.world == 1:
        return values
    import torch

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _barrier(dist: _Dist) -> None:
    if dist.world > 1:
        import torch

        torch.distributed.barrier()


# ---------------------------------------------------------------- setup pieces


@dataclass
class _Run:
    """Everything built before the first step."""

    model: Any  # the model being trained (a PEFT model for LoRA)
    tokenizer: Any
    loss_module: Any
    wrapped: Any  # loss_module, or its DDP wrapper
    params: list
    optimizer: Any
    source: Any
    val_source: Any
    arch: str
    device: str
    autocast_dtype: Any
    info: Any
    extra: dict = field(default_factory=dict)


def _load_split(ctx, config: TrainConfig, tokenizer, split: str):
    from .. import data
    from ..templates import instruct_format
    from .objectives import CausalBlocks, InstructionBatches

    record = ctx.registry.get_dataset(config.dataset)
    seed = config.seed if split == "train" else config.seed + 7
    if config.objective == "instruct":
        records = data.read_instructions(ctx, record, split)
        if not records:
            if split == "train":
                raise WorkbenchError(f"dataset '{record.name}' has no training records")
            return None
        fmt = instruct_format(tokenizer, ctx.registry.get_model(config.base_model).path)
        return InstructionBatches(tokenizer, records, fmt, config.seq, config.sampling, seed)
    ids = data.split_token_array(ctx, record, split, tokenizer)
    if len(ids) < config.seq:
        if split == "train":
            raise WorkbenchError(f"dataset '{record.name}' has {len(ids)} training tokens, fewer than "
                                 f"one block of --seq {config.seq}")
        return None
    return CausalBlocks(ids, config.seq, config.sampling, seed, with_labels=config.objective == "causal")


def _build(ctx, config: TrainConfig, dist: _Dist, device: str, fast_loss: bool, compile_body: bool,
           chunk: int | None, compile_loss: bool = True, model_speedups: bool | None = None) -> _Run:
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import _read_config, arch_of, load_tokenizer
    from .methods import apply_method
    from .objectives import RandomTokens, letter_target, make_loss_module
    from .precision import keep_frozen_in, resolve_precision, saved_dtype, torch_dtype
    from .speed import keep_freed_memory

    base = ctx.registry.get_model(config.base_model)
    arch = arch_of(_read_config(Path(base.path)))
    tokenizer = load_tokenizer(base.path)
    target = None
    if config.objective == "kl-letter":
        vocab = _vocab_size(base.path)
        target = letter_target(tokenizer, config.letter, vocab)
    if config.dataset:
        source = _load_split(ctx, config, tokenizer, "train")
        val_source = _load_split(ctx, config, tokenizer, "val")
    else:
        source = RandomTokens(_vocab_size(base.path), config.seq, config.seed)
        val_source = RandomTokens(_vocab_size(base.path), config.seq, config.seed + 7)

    torch.manual_seed(config.seed)
    with _quiet_hf():
        try:
            model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True, trust_remote_code=False,
                                                         dtype=torch.float32)
        except Exception as error:  # noqa: BLE001 - a broken folder fails in many ways
            raise WorkbenchError(f"cannot load '{base.name}' for training: {str(error).splitlines()[0]}") from None
    model.config.use_cache = False
    model, info = apply_method(model, config, arch)
    autocast_dtype = resolve_precision(config.precision, device)
    base_dtype = saved_dtype(base.path)
    kept = 0
    if config.method in ADAPTER_METHODS and autocast_dtype is not None and torch_dtype(base_dtype) == autocast_dtype:
        kept = keep_frozen_in(model, autocast_dtype)  # see precision.py: no fp32 copy of frozen weights
    model.to(device)
    model.train()
    _say(dist, f"method: {info.describe()}")
    allocator = fast_loss and device.startswith("cpu") and keep_freed_memory()
    loss_module = make_loss_module(model, config.objective, target=target, fast=fast_loss, chunk=chunk,
                                   use_compile=compile_loss, speedups=model_speedups,
                                   kl_positions=config.kl_positions)
    loss_module.to(device)
    notes = list(loss_module.speedups)
    if loss_module.fast and config.objective != "kl-letter":
        extra = loss_module.head_spec.describe()
        notes.append("chunked LM-head loss" + (" (compiled kernel)" if compile_loss else "")
                     + (f" ({extra})" if extra else ""))
    elif loss_module.fallback_reason:
        notes.append(f"the model's own loss: {loss_module.fallback_reason}")
    if autocast_dtype is not None:
        notes.append("bf16 autocast")
    if allocator:
        notes.append("malloc keeps freed blocks")
    if kept:
        notes.append(f"{kept} frozen weights kept in {base_dtype}")
    if compile_body:
        notes.append("compiled body (torch.compile: the first steps take longer)")
    _say(dist, f"speed: {', '.join(notes) or 'plain fp32'}")
    if compile_body:
        body, head = loss_module._parts
        loss_module._parts = (torch.compile(body), head)
    wrapped = loss_module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(loss_module, device_ids=[dist.local_rank] if device.startswith("cuda")
                                          else None)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, config, device)
    return _Run(model, tokenizer, loss_module, wrapped, params, optimizer, source, val_source, arch, device,
                autocast_dtype, info, {"base_dtype": base_dtype})


class _quiet_hf:
    """transformers' own progress bars ("Loading weights", "Writing model shards") off for a moment."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc) -> None:
        from transformers.utils import logging as hf_logging

        if self.was_on:
            hf_logging.enable_progress_bar()


def _vocab_size(folder: str) -> int:
    from ..models import _read_config

    config = _read_config(Path(folder))
    return int(config.get("vocab_size") or 50257)


def _make_optimizer(params: list, config: TrainConfig, device: str):
    import torch

    kind = device.split(":")[0]
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    if kind in ("cpu", "cuda"):
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return torch.optim.AdamW(params, **kwargs)


# ---------------------------------------------------------------- checkpoint save / load


def _export_model(run: _Run, config: TrainConfig, folder: Path) -> None:
    """The registrable model folder: full weights or a PEFT adapter, tokenizer files, and for instruction
    tuning the chat template it was trained with."""
    from ..templates import ship_template

    from .precision import save_full_model

    folder.mkdir(parents=True, exist_ok=True)
    with _quiet_hf():  # no "Writing model shards" bar inside our own
        if config.method in ADAPTER_METHODS:
            run.model.save_pretrained(str(folder), safe_serialization=True)
        else:  # a full model is saved in its base's dtype (fp32 master weights stay in the checkpoint)
            save_full_model(run.model, folder, run.extra["base_dtype"])
    run.tokenizer.save_pretrained(str(folder))
    if config.objective == "instruct":
        ship_template(run.tokenizer, folder)


def _save(run: _Run, config: TrainConfig, run_dir: Path, step: int, state: dict) -> Path:
    import torch

    from .checkpoints import MODEL_FOLDER, STATE_FILE, write_checkpoint
    from .precision import save_master

    def write(folder: Path) -> None:
        _export_model(run, config, folder / MODEL_FOLDER)
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


_RESUME_KEYS = ("base_model", "dataset", "objective", "letter", "kl_positions", "method", "freeze", "lora_r",
                "lora_alpha", "lora_dropout", "lora_targets", "batch", "seq", "grad_accum", "seed", "sampling")


def _load(run: _Run, config: TrainConfig, checkpoint: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    from .checkpoints import MODEL_FOLDER, read_state
    from .precision import load_master

    state = read_state(checkpoint)
    saved = state.get("config", {})
    changed = [k for k in _RESUME_KEYS if k in saved and saved[k] != config.to_dict()[k]]
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


# ---------------------------------------------------------------- steps


def _to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device, non_blocking=True) if v is not None else None) for k, v in batch.items()}


def _evaluate(run: _Run, config: TrainConfig, dist: _Dist) -> float | None:
    import torch

    from .objectives import scored_count, slice_batch  # noqa: F401

    if run.val_source is None:
        return None
    batches = run.val_source.eval_batches(max(1, config.batch // dist.world), MAX_EVAL_ITEMS)
    mine = [b for i, b in enumerate(batches) if i % dist.world == dist.rank]
    total = count = 0.0
    run.loss_module.eval()
    try:
        with torch.no_grad(), _autocast(run):
            for batch in mine:
                batch = _to_device(batch, run.device)
                loss, n = run.loss_module(batch["input_ids"], batch.get("labels"), batch.get("attention_mask"))
                total += float(loss)
                count += float(n)
    finally:
        run.loss_module.train()
    total, count = _all_reduce([total, count], dist, run.device)
    return total / count if count else None


def _autocast(run: _Run):
    import contextlib

    import torch

    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(run.device.split(":")[0], dtype=run.autocast_dtype)


def _train_step(run: _Run, config: TrainConfig, dist: _Dist, step: int) -> tuple[float, float, int]:
    """One optimizer step (grad_accum micro-batches). Returns (mean loss, grad norm, tokens processed)."""
    import contextlib

    import torch

    from .objectives import batch_seed, scored_count, slice_batch

    torch.manual_seed(batch_seed(config.seed, step, stream=1000 + dist.rank))
    micro = [run.source.batch(step * config.grad_accum + i, config.batch) for i in range(config.grad_accum)]
    n_total = sum(scored_count(b, config.objective) for b in micro)
    tokens = sum(int(b["attention_mask"].sum()) if b.get("attention_mask") is not None
                 else b["input_ids"].numel() for b in micro)
    scale = dist.world / max(1, n_total)
    loss_sum = 0.0
    for i, batch in enumerate(micro):
        local = _to_device(slice_batch(batch, dist.rank, dist.world), run.device)
        sync = dist.world == 1 or i == len(micro) - 1
        context = contextlib.nullcontext() if sync else run.wrapped.no_sync()
        with context:
            with _autocast(run):
                loss, _ = run.wrapped(local["input_ids"], local.get("labels"), local.get("attention_mask"))
            (loss * scale).backward()
        loss_sum += float(loss.detach())
    max_norm = config.clip if config.clip and config.clip > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.params, max_norm, foreach=True))
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    (loss_sum,) = _all_reduce([loss_sum], dist, run.device)
    return loss_sum / max(1, n_total), grad_norm, tokens


# ---------------------------------------------------------------- the entry point


def train(ctx, config: TrainConfig, run_dir: Path, on_metrics: Callable[[list[dict]], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False, job_id: int | None = None,
          progress: bool = True, *, fast_loss: bool = True, compile_body: bool = False,
          compile_loss: bool = True, model_speedups: bool | None = None, chunk: int | None = None,
          register: bool = True) -> TrainResult:
    """Train `config` in this process (or this rank of a torchrun group); see the module docstring.

    Extra keyword options (not part of the stable contract): fast_loss=False uses the model's own full
    logits; compile_body=True runs torch.compile on the transformer body; compile_loss=False keeps the
    loss kernel eager (also WORKBENCH_COMPILE=0); register=False skips registering."""
    from .checkpoints import latest_complete_checkpoint

    config.validate(ctx)
    run_dir = Path(run_dir)
    import torch

    dist, device = _setup_distributed(config.device)
    try:
        existing = latest_complete_checkpoint(run_dir)
        if existing is not None and not resume:
            raise WorkbenchError(f"{run_dir} already holds checkpoints from an earlier run; resume it "
                                 "(--resume) or use another output name")
        compile_body = compile_body or config.compiles_body(device)
        run = _build(ctx, config, dist, device, fast_loss, compile_body, chunk, compile_loss, model_speedups)
        start, train_loss, val_loss = 0, None, None
        if resume:
            if existing is None:
                _say(dist, f"no complete checkpoint in {run_dir}: starting from step 0")
            else:
                state = _load(run, config, existing)
                start = int(state["step"])
                train_loss, val_loss = state.get("train_loss"), state.get("val_loss")
                _say(dist, f"resuming from {existing} (step {start} of {config.steps})")
        result = _loop(ctx, config, run, dist, run_dir, start, train_loss, val_loss, on_metrics,
                       should_stop, progress)
        last = latest_complete_checkpoint(run_dir)
        result.last_checkpoint = str(last) if last else None
        if dist.main and register and not result.stopped and last is not None:
            from .checkpoints import register_result

            result.model = register_result(ctx, config, last, job_id=job_id)
        _barrier(dist)
        return result
    finally:
        if dist.created:
            torch.distributed.destroy_process_group()


def _loop(ctx, config: TrainConfig, run: _Run, dist: _Dist, run_dir: Path, start: int,
          train_loss: float | None, val_loss: float | None, on_metrics, should_stop, progress: bool) -> TrainResult:
    from .schedule import lr_factor

    bar = None
    if progress and dist.main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, file=sys.stderr, desc=f"train {config.out}",
                   unit="step", dynamic_ncols=True, leave=True)

    def report(rows: list[dict]) -> None:
        if on_metrics is not None and dist.main and rows:
            on_metrics(rows)

    def state_for(step: int) -> dict:
        return {"step": step, "sampler": {"batches_drawn": step * config.grad_accum, "kind": config.sampling},
                "scheduler": {"kind": config.schedule, "step": step, "warmup": config.warmup,
                              "total": config.steps, "base_lr": config.lr},
                "train_loss": train_loss, "val_loss": val_loss,
                "val_perplexity": math.exp(min(val_loss, 700)) if val_loss is not None else None,
                "config": config.to_dict(), "world_size": dist.world, "method": run.info.describe()}

    def save(step: int) -> None:
        if dist.main:
            _save(run, config, run_dir, step, state_for(step))
        _barrier(dist)

    step, stopped, saved_at = start, False, start if start else -1
    try:
        while step < config.steps:
            if _stop_requested(should_stop, dist, run.device):
                stopped = True
                break
            began = time.perf_counter()
            lr = config.lr * lr_factor(config.schedule, step, config.steps, config.warmup)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            train_loss, grad_norm, tokens = _train_step(run, config, dist, step)
            step += 1
            elapsed = max(1e-9, time.perf_counter() - began)
            if not math.isfinite(train_loss):
                raise WorkbenchError(f"the training loss became {train_loss} at step {step}; "
                                     "lower --lr or use --precision fp32")
            rows = [{"step": step, "split": "train", "loss": train_loss, "lr": lr, "grad_norm": grad_norm,
                     "tokens_per_s": tokens / elapsed}]
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                val_loss = _evaluate(run, config, dist)
                if val_loss is not None:
                    rows.append({"step": step, "split": "val", "loss": val_loss, "lr": None, "grad_norm": None,
                                 "tokens_per_s": None})
            report(rows)
            if bar is not None:
                postfix = {"loss": f"{train_loss:.4f}", "lr": f"{lr:.2e}", "tok/s": f"{tokens / elapsed:,.0f}"}
                if val_loss is not None:
                    postfix["val"] = f"{val_loss:.4f}"
                    postfix["ppl"] = f"{math.exp(min(val_loss, 700)):.1f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
            if config.save_every and step % config.save_every == 0 and step < config.steps:
                save(step)
                saved_at = step
        if step > 0 and saved_at != step:
            save(step)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(model=None, steps_done=step, final_train_loss=train_loss, final_val_loss=val_loss,
                       stopped=stopped)


def _stop_requested(should_stop, dist: _Dist, device: str) -> bool:
    flag = 1.0 if (should_stop is not None and should_stop()) else 0.0
    if dist.world > 1:
        (flag,) = _all_reduce([flag], dist, device)
    return flag > 0
