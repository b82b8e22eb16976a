"""`workbench train`: fine-tune a registered model in the foreground (a progress bar on stderr).

`add_train_flags(parser)` here and `config_from_args(args)` (train_config.py) serve the background-job
flavour too (`train --detach`, owned by the jobs module)."""

from __future__ import annotations

import argparse
import json

from .common import add_json_flag, command, context, emit, info, seed_value
from .train_config import config_from_args


def register(subcommands) -> None:
    parser = command(subcommands, "train", cmd_train, "fine-tune a model (foreground; a new model is registered)")
    add_train_flags(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted foreground run of --out from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .jobs_cmds import add_detach_flags  # --detach, --nproc, ... (background jobs)

    add_detach_flags(parser)
    add_json_flag(parser)


def add_train_flags(parser) -> None:
    """Every training setting as a flag. No flag has a default here (argparse.SUPPRESS): the namespace
    holds only what was typed, so `config_from_args` can layer TrainConfig defaults < --config FILE <
    command line."""
    previous, parser.argument_default = parser.argument_default, argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE",
                        help="a YAML file of settings keyed by long flag name (model, data, steps, ...); "
                             "flags on the command line win")
    parser.add_argument("--model", dest="base_model", help="the registered model to start from")
    parser.add_argument("--data", dest="dataset",
                        help="a registered dataset (optional for --objective kl-letter: random inputs)")
    parser.add_argument("--out", help="name of the new model")
    parser.add_argument("--objective", choices=["causal", "instruct", "kl-letter"])
    parser.add_argument("--letter", help="kl-letter: the letter (default x)")
    parser.add_argument("--kl-positions", choices=["all", "final"],
                        help="kl-letter: train the KL at every position (default) or only the final one "
                             "(the original experiment)")
    parser.add_argument("--method", choices=["full", "lora", "dora", "freeze-attention"],
                        help="lora/dora: peft adapters; freeze-attention: train all but the attention modules")
    parser.add_argument("--freeze", action="append", metavar="PATTERN",
                        help="freeze parameters whose name matches this glob (repeatable)")
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--lora-alpha", type=int)
    parser.add_argument("--lora-dropout", type=float)
    parser.add_argument("--lora-targets", type=_names, action="extend", metavar="NAMES",
                        help="lora/dora: modules to adapt, comma-separated, or all-linear "
                             "(default: peft's choice for the architecture, else all-linear)")
    parser.add_argument("--merge", action="store_true", help="lora: register the merged full model, not an adapter")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int, help="sequences per micro-batch (all processes)")
    parser.add_argument("--seq", type=int, help="tokens per sequence")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup", type=int, help="warm-up steps")
    parser.add_argument("--schedule", choices=["constant", "linear", "cosine"])
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument("--clip", type=float, help="gradient-norm clip (0 = off)")
    parser.add_argument("--eval-every", type=int, help="validation every N steps (0 = end)")
    parser.add_argument("--save-every", type=int, help="checkpoint every N steps (0 = end)")
    parser.add_argument("--keep", type=int, dest="keep_checkpoints",
                        help="checkpoints kept")
    parser.add_argument("--seed", type=seed_value)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", choices=["auto", "on", "off"],
                        help="torch.compile the model body (auto: on a GPU for runs of 300+ steps)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--sampling", choices=["random", "sequential"])
    parser.argument_default = previous


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def foreground_run_dir(ctx, out: str):
    return ctx.ws.jobs_dir / f"fg-{out}"


class _stop_on_signals:
    """First Ctrl-C (or SIGTERM): finish the step, save a checkpoint, stop. A second Ctrl-C interrupts."""

    def __enter__(self):
        import signal
        import threading

        self.event = threading.Event()
        self.previous = {}

        def handler(signum, frame):
            if self.event.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.event.set()
            info("stopping after this step (a checkpoint is saved; Ctrl-C again to abort)")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        return self.event

    def __exit__(self, *exc) -> None:
        import signal

        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def cmd_train(args) -> int:
    import shutil

    from .jobs_cmds import check_not_detached, cmd_train_detached

    if args.detach:
        return cmd_train_detached(args)
    check_not_detached(args)

    from ..core.training.loop import train

    config = config_from_args(args)
    ctx = context(args)
    config.validate(ctx)
    run_dir = foreground_run_dir(ctx, config.out)
    log_path = run_dir / "log.jsonl"

    def on_metrics(rows: list[dict]) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

    if not args.resume and log_path.exists():
        from ..core.training.checkpoints import latest_complete_checkpoint

        if latest_complete_checkpoint(run_dir) is None:
            log_path.unlink()  # a run that died before its first checkpoint: start afresh
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    with _stop_on_signals() as stop:
        result = train(ctx, config, run_dir, on_metrics=on_metrics, should_stop=stop.is_set, resume=args.resume,
                       progress=not args.no_progress)
    if result.model is not None:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the model is registered; keep the log
    data = {
        "model": result.model.name if result.model else None, "path": result.model.path if result.model else None,
        "adapter": bool(result.model and result.model.adapter), "parent": config.base_model,
        "steps_done": result.steps_done, "final_train_loss": result.final_train_loss,
        "final_val_loss": result.final_val_loss, "stopped": result.stopped, "run_dir": str(run_dir),
        "settings": config.to_dict(),
    }

    def render(d: dict) -> str:
        if d["model"] is None:
            return f"stopped after {d['steps_done']} steps; continue with the same command and --resume"
        val = f", val loss {d['final_val_loss']:.4f}" if d["final_val_loss"] is not None else ""
        kind = "adapter" if d["adapter"] else "model"
        return (f"registered {kind} '{d['model']}' (parent {d['parent']}) after {d['steps_done']} steps: "
                f"train loss {d['final_train_loss']:.4f}{val}")

    emit(args, data, render)
    return 0
