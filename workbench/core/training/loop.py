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

This module holds `train` and the steps; beside it, distributed.py sets up the ranks and their collectives,
run_setup.py builds the run (data, model, loss, optimizer) and run_checkpoints.py saves and resumes it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import WorkbenchError
from ..registry import ModelRecord
from .config import TrainConfig
from .distributed import Distributed, all_reduce, barrier, say_on_main, setup_distributed
from .run_checkpoints import load_checkpoint, save_checkpoint
from .run_setup import TrainRun, build_run

MAX_EVAL_ITEMS = 64  # validation uses at most this many blocks (or records) of the val split


@dataclass
class TrainResult:
    model: ModelRecord | None
    steps_done: int
    final_train_loss: float | None
    final_val_loss: float | None
    stopped: bool = False
    last_checkpoint: str | None = None


# ---------------------------------------------------------------- steps


def _to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device, non_blocking=True) if v is not None else None) for k, v in batch.items()}


def _evaluate(run: TrainRun, config: TrainConfig, dist: Distributed) -> float | None:
    import torch

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
    total, count = all_reduce([total, count], dist, run.device)
    return total / count if count else None


def _autocast(run: TrainRun):
    import contextlib

    import torch

    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(run.device.split(":")[0], dtype=run.autocast_dtype)


def _train_step(run: TrainRun, config: TrainConfig, dist: Distributed, step: int) -> tuple[float, float, int]:
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
    (loss_sum,) = all_reduce([loss_sum], dist, run.device)
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
    from ..models.tokenizer import quiet_transformers

    quiet_transformers()  # before transformers pulls torchao in: its kernel-loading noise filled job logs
    run_dir = Path(run_dir)
    import torch

    dist, device = setup_distributed(config.device)
    try:
        existing = latest_complete_checkpoint(run_dir)
        if existing is not None and not resume:
            raise WorkbenchError(f"{run_dir} already holds checkpoints from an earlier run; resume it "
                                 "(--resume) or use another output name")
        compile_body = compile_body or config.compiles_body(device)
        run = build_run(ctx, config, dist, device, fast_loss, compile_body, chunk, compile_loss, model_speedups)
        start, train_loss, val_loss = 0, None, None
        if resume:
            if existing is None:
                say_on_main(dist, f"no complete checkpoint in {run_dir}: starting from step 0")
            else:
                state = load_checkpoint(run, config, existing)
                start = int(state["step"])
                train_loss, val_loss = state.get("train_loss"), state.get("val_loss")
                say_on_main(dist, f"resuming from {existing} (step {start} of {config.steps})")
        result = _loop(ctx, config, run, dist, run_dir, start, train_loss, val_loss, on_metrics,
                       should_stop, progress)
        last = latest_complete_checkpoint(run_dir)
        result.last_checkpoint = str(last) if last else None
        if dist.main and register and not result.stopped and last is not None:
            from .checkpoints import register_result

            result.model = register_result(ctx, config, last, job_id=job_id)
        barrier(dist)
        return result
    finally:
        if dist.created:
            torch.distributed.destroy_process_group()


def _loop(ctx, config: TrainConfig, run: TrainRun, dist: Distributed, run_dir: Path, start: int,
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
            save_checkpoint(run, config, run_dir, step, state_for(step))
        barrier(dist)

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


def _stop_requested(should_stop, dist: Distributed, device: str) -> bool:
    flag = 1.0 if (should_stop is not None and should_stop()) else 0.0
    if dist.world > 1:
        (flag,) = all_reduce([flag], dist, device)
    return flag > 0
