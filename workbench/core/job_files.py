"""A job's constants and files: statuses, timings, jobs/<id>/ paths, its spec and checkpoints.

The base the other job modules build on (jobs, job_liveness, job_metrics, job_runner); imports nothing
of theirs."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from .errors import WorkbenchError

TERMINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted")
RESUMABLE_STATUSES = ("failed", "cancelled", "interrupted")
HEARTBEAT_S = 2.0
DEFAULT_STALE_S = 30.0
FINISHING_S = 20.0  # how long a resume waits for a stopped job's runner to end
ENV_STALE = "WORKBENCH_JOB_STALE_S"  # seconds without a heartbeat before a job counts as interrupted
ENV_MAX_JOBS = "WORKBENCH_MAX_JOBS"  # jobs that may run at once on one device (default 1)
RUNNER_MODULE = "workbench.core.job_runner"
METRIC_KEYS = ("step", "split", "loss", "lr", "grad_norm", "tokens_per_s")


def hostname() -> str:
    return socket.gethostname()


def stale_after() -> float:
    try:
        return float(os.environ.get(ENV_STALE, DEFAULT_STALE_S))
    except ValueError:
        return DEFAULT_STALE_S


def default_max_concurrent() -> int:
    try:
        return max(1, int(os.environ.get(ENV_MAX_JOBS, "1")))
    except ValueError:
        return 1


# ---------------------------------------------------------------- files of a job


class JobFiles:
    """The paths of jobs/<id>/."""

    def __init__(self, ctx, job_id: int):
        self.dir = ctx.ws.job_dir(int(job_id))

    def __getattr__(self, name: str) -> Path:
        names = {"spec": "job.json", "stdout": "stdout.log", "log": "log.jsonl", "stop": "STOP",
                 "result": "result.json", "error": "error.json", "checkpoints": "checkpoints",
                 "lock": "runner.lock"}
        if name not in names:
            raise AttributeError(name)
        return self.dir / names[name]


def read_spec(ctx, job_id: int) -> dict:
    path = JobFiles(ctx, job_id).spec
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkbenchError(f"job {job_id} has no {path}; it cannot be run or resumed") from None


def latest_checkpoint(ctx, job_id: int) -> str | None:
    from .training.checkpoints import latest_complete_checkpoint

    found = latest_complete_checkpoint(JobFiles(ctx, job_id).dir)
    return str(found) if found else None


def checkpoint_step(path: str | os.PathLike | None) -> int | None:
    """The N of .../step-N (None for no checkpoint)."""
    if not path:
        return None
    name = Path(path).name
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None
