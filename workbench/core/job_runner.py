"""The process a job runs as: `python -m workbench.core.job_runner --home H --job ID [--resume]`.

Started by jobs.launch_job / resume_job in its own session. It
  1. records its pid and host, starts a heartbeat thread (every 2 s), ignores SIGHUP and turns
     SIGTERM / SIGINT into "checkpoint and stop";
  2. waits in status "queued" until its device has a free slot (jobs.claim_job_slot, FIFO);
  3. trains in this process, or, for nproc/nnodes > 1, runs torchrun over this module with --worker
     (rank 0 writes metrics, checkpoints and the result; TORCHELASTIC_ERROR_FILE carries the first
     failing rank's traceback back here);
  4. ends the job completed (with the registered model), cancelled (stopped on request, with its
     checkpoint), or failed (the tail of the traceback in `error`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from .context import open_workspace
from .errors import WorkbenchError
from .faults import disk_fault
from .job_files import (HEARTBEAT_S, RUNNER_MODULE, JobFiles, checkpoint_step, hostname, latest_checkpoint, read_spec,
                        stale_after)
from .job_liveness import refresh_statuses, take_runner_lock
from .job_metrics import MetricSink
from .registry import now_iso

ERROR_LINES = 12  # lines of traceback kept in the job's error summary


class Heartbeat(threading.Thread):
    def __init__(self, registry, job_id: int, interval: float = HEARTBEAT_S):
        super().__init__(name="job-heartbeat", daemon=True)
        self.registry, self.job_id, self.interval = registry, job_id, interval
        self.halt = threading.Event()

    def beat(self) -> None:
        try:
            self.registry.update_job(self.job_id, heartbeat_at=time.time(), heartbeat_mono=time.monotonic())
        except Exception as error:  # a busy moment must not kill the job; the next beat retries
            print(f"heartbeat: {error}", file=sys.stderr, flush=True)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


def error_summary(text: str, lines: int = ERROR_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def resolve_job_device(config: dict) -> str:
    """The queue's slot key: cpu, cuda:N or mps."""
    from .models import resolve_device

    device = resolve_device(config.get("device"))
    if device == "cuda":
        device = "cuda:0"
    return device


# ---------------------------------------------------------------- training (in-process or a rank)


def run_training(ctx, job_id: int, resume: bool, should_stop) -> dict:
    """Train this job's config; rank 0 reports metrics and returns/writes the result."""
    from .training.config import TrainConfig
    from .training.loop import train

    files = JobFiles(ctx, job_id)
    config = TrainConfig.from_dict(read_spec(ctx, job_id)["config"])
    rank = int(os.environ.get("RANK", "0"))
    sink = MetricSink(ctx.registry, job_id, files.log, save_every=config.save_every) if rank == 0 else None
    try:
        result = train(ctx, config, files.dir, on_metrics=sink, should_stop=should_stop, resume=resume,
                       job_id=job_id, progress=False)
    finally:
        if sink is not None:
            sink.flush(final=True)
    summary = {"model": result.model.name if result.model else None, "steps_done": result.steps_done,
               "final_train_loss": result.final_train_loss, "final_val_loss": result.final_val_loss,
               "stopped": result.stopped, "last_checkpoint": result.last_checkpoint}
    if rank == 0:
        files.result.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def worker_main(args) -> int:
    """One torchrun rank."""
    from torch.distributed.elastic.multiprocessing.errors import record

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ctx = open_workspace(args.home, starter=False)
    stop_file = JobFiles(ctx, args.job).stop

    rank = os.environ.get("RANK", "?")

    @record
    def entry() -> None:
        try:
            run_training(ctx, args.job, args.resume, should_stop=stop_file.exists)
        except Exception as error:
            detail = str(error) if isinstance(error, WorkbenchError) else error_summary(traceback.format_exc())
            traceback.print_exc()
            raise RankError(f"rank {rank}: {detail}") from None

    entry()
    return 0


def torchrun_command(args, launch: dict) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(launch["nproc"]),
               "--nnodes", str(launch["nnodes"])]
    if launch["nnodes"] == 1 and not launch.get("master_addr"):
        command.append("--standalone")
    else:
        command += ["--node_rank", str(launch["node_rank"]),
                    "--master_addr", launch["master_addr"] or "127.0.0.1",
                    "--master_port", str(launch.get("master_port") or 29500)]
    command += ["-m", RUNNER_MODULE, "--home", args.home, "--job", str(args.job), "--worker"]
    if args.resume:
        command.append("--resume")
    return command


def run_distributed(ctx, args, launch: dict, stop) -> dict:
    """torchrun over --worker; the first failing rank's traceback becomes our exception."""
    files = JobFiles(ctx, args.job)
    files.error.unlink(missing_ok=True)
    files.result.unlink(missing_ok=True)
    env = dict(os.environ, TORCHELASTIC_ERROR_FILE=str(files.error), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(torchrun_command(args, launch), env=env, stdin=subprocess.DEVNULL)
    process.wait()  # a cancel reaches the ranks through the STOP file our SIGTERM handler writes;
    # the loop all-reduces should_stop, so every rank stops at the same step.
    if process.returncode != 0:
        raise RankFailed(process.returncode, rank_error(files.error, files.stdout))
    if launch.get("node_rank", 0) != 0:
        # Global rank 0 (on node 0) reports, saves and registers; this node's part simply ended well.
        return {"model": None, "steps_done": None, "final_train_loss": None, "final_val_loss": None,
                "stopped": stop.is_set(), "last_checkpoint": None}
    if not files.result.exists():
        raise RankFailed(process.returncode, "torchrun ended without a result from rank 0")
    return json.loads(files.result.read_text())


class RankError(Exception):
    """Raised by a failing rank; its message (rank + traceback tail) travels in torchrun's error file."""


class RankFailed(Exception):
    def __init__(self, returncode: int, detail: str):
        super().__init__(detail)
        self.returncode, self.detail = returncode, detail


def rank_error(path: Path, stdout_log: Path) -> str:
    """The failing rank and its traceback, from torchrun's error file (else the end of stdout.log)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        try:
            tail = error_summary(stdout_log.read_text(errors="replace"))
        except OSError:
            tail = ""
        return f"torchrun failed without an error file; end of stdout.log:\n{tail}"
    message = data.get("message", data)
    if isinstance(message, dict):
        text = message.get("message") or message.get("extraInfo", {}).get("py_callstack", "")
    else:
        text = str(message)
    return text.removeprefix(f"{RankError.__name__}: ")


# ---------------------------------------------------------------- the supervisor


def supervise(args) -> int:
    stop = threading.Event()
    ctx = open_workspace(args.home, starter=False)
    registry, job_id = ctx.registry, args.job
    files = JobFiles(ctx, job_id)

    def on_stop(signum, frame) -> None:
        if not stop.is_set():
            print(f"job {job_id}: signal {signum}: checkpointing and stopping", file=sys.stderr, flush=True)
            stop.set()
            try:
                files.stop.write_text(now_iso() + "\n")
            except OSError:
                pass

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    # One live runner per job: held until this process ends. A second runner (a resume while this one
    # lives) leaves without touching the job.
    if take_runner_lock(files) is None:
        print(f"job {job_id} already has a live runner; this one leaves it alone", file=sys.stderr, flush=True)
        return 0
    spec = read_spec(ctx, job_id)
    launch = spec.get("launch", {})
    me = {"pid": os.getpid(), "host": hostname()}
    if not registry.set_job_status_if(job_id, ["queued"], heartbeat_at=time.time(),
                                      heartbeat_mono=time.monotonic(), **me):
        print(f"job {job_id} is no longer queued ({registry.get_job(job_id).status}); nothing to do",
              file=sys.stderr)
        return 0
    heartbeat = Heartbeat(registry, job_id)
    heartbeat.start()
    try:
        try:
            device = resolve_job_device(spec["config"])
            registry.update_job(job_id, device=device)
        except Exception:
            return finish(ctx, job_id, heartbeat, failure=traceback.format_exc())
        if not wait_for_slot(ctx, job_id, device, launch.get("max_concurrent") or 1, stop, me):
            return finish(ctx, job_id, heartbeat, cancelled_in_queue=True)
        print(f"job {job_id}: running on {device} (pid {os.getpid()})", file=sys.stderr, flush=True)
        distributed = launch.get("nproc", 1) > 1 or launch.get("nnodes", 1) > 1
        try:
            if distributed:
                result = run_distributed(ctx, args, launch, stop)
            else:
                result = run_training(ctx, job_id, args.resume,
                                      should_stop=lambda: stop.is_set() or files.stop.exists())
        except WorkbenchError as error:
            return finish(ctx, job_id, heartbeat, failure=str(error))
        except RankFailed as error:
            return finish(ctx, job_id, heartbeat, failure=error.detail)
        except Exception as error:
            traceback.print_exc()
            fault = disk_fault(error, ctx.ws.home)  # a full disk is one line, not inline_container.cc
            return finish(ctx, job_id, heartbeat, failure=str(fault) if fault else traceback.format_exc())
        return finish(ctx, job_id, heartbeat, result=result)
    finally:
        heartbeat.stop()


def wait_for_slot(ctx, job_id: int, device: str, limit: int, stop, me: dict) -> bool:
    """Poll until this job may run on `device` (True) or it is cancelled while queued (False)."""
    registry, said, last_refresh = ctx.registry, False, 0.0
    while True:
        if stop.is_set():
            return False
        if time.monotonic() - last_refresh > 5:
            refresh_statuses(ctx)  # a dead job must not hold a slot forever
            last_refresh = time.monotonic()
        outcome = registry.claim_job_slot(job_id, me["host"], device, limit, time.time() - stale_after(),
                                          started_at=now_iso(), pid=me["pid"], heartbeat_at=time.time(),
                                          heartbeat_mono=time.monotonic())
        if outcome == "claimed":
            return True
        if outcome == "gone":
            raise SystemExit(f"job {job_id} left the queue ({registry.get_job(job_id).status})")
        if not said:
            print(f"job {job_id}: queued, waiting for a free slot on {device} (limit {limit})",
                  file=sys.stderr, flush=True)
            said = True
        stop.wait(1.0)


def finish(ctx, job_id: int, heartbeat: Heartbeat, result: dict | None = None, failure: str | None = None,
           cancelled_in_queue: bool = False) -> int:
    heartbeat.stop()
    registry = ctx.registry
    # "interrupted" too: a stale-heartbeat verdict on a job that was alive after all is overruled.
    active = ["queued", "running", "interrupted"]
    if cancelled_in_queue:
        registry.set_job_status_if(job_id, active, status="cancelled", ended_at=now_iso(),
                                   error="cancelled while queued")
        return 0
    checkpoint = latest_checkpoint(ctx, job_id)
    if failure is not None:
        registry.set_job_status_if(job_id, active, status="failed", ended_at=now_iso(),
                                   error=error_summary(failure), last_checkpoint=checkpoint)
        print(f"job {job_id}: failed\n{failure}", file=sys.stderr, flush=True)
        return 1
    status = "cancelled" if result["stopped"] else "completed"
    checkpoint = result.get("last_checkpoint") or checkpoint
    changes = {"status": status, "ended_at": now_iso(), "last_checkpoint": checkpoint, "error": None}
    if result.get("steps_done") is not None:
        changes["step"] = result["steps_done"]
    registry.set_job_status_if(job_id, active, **changes)
    note = f" as '{result['model']}'" if result.get("model") else ""
    if status == "cancelled":
        # The log is read in the app and in a shell: name both ways (the Train screen's keys, the CLI).
        note = (f" at step {checkpoint_step(checkpoint)}; register its model so far (key g on the Train "
                f"screen, or `workbench jobs register {job_id}`) or continue it (key u, or "
                f"`workbench jobs resume {job_id}`)")
    print(f"job {job_id}: {status}{note}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.core.job_runner")
    parser.add_argument("--home", required=True)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--worker", action="store_true", help="one torchrun rank (internal)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
