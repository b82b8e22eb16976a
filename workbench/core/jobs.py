"""Background training jobs: launch, watch, cancel, resume.

A job is its own process (`python -m workbench.core.job_runner`) in a new session, so it outlives the
app, the terminal and the SSH connection that started it. The registry is the single feed: the job row
(status, pid, host, step of total, heartbeat, last complete checkpoint, error summary) and its metric rows,
written by rank 0 in short batched transactions. Files beside it, in jobs/<id>/:

    job.json        the resolved settings: {"config": TrainConfig dict, "launch": {nproc, ...}}
    stdout.log      the job process's stdout and stderr (torchrun's too)
    log.jsonl       every metric row as written
    checkpoints/    step-N/ folders from the training loop (complete ones carry a COMPLETE marker)
    STOP            written by `cancel`: the loop checkpoints and stops at its next step
    runner.lock     flock'ed by the job's live runner for its whole life: one runner per job
    result.json     what the training run returned (written by rank 0)

Status: queued -> running -> completed | failed | cancelled | interrupted. "interrupted" is set from the
outside (refresh_statuses) when a job's process is gone, or its heartbeat is stale (by the monotonic
clock on the same host) and its runner no longer holds runner.lock: a stalled but living runner (a
suspended VM, an I/O stall) is never declared dead, and a resume is refused while it lives. failed, cancelled and
interrupted jobs resume from their last complete checkpoint. A cancelled job's model so far is
registered on request (`register_job_model`, `workbench jobs register ID`), never automatically, so
the registry only holds models someone asked for.

Cheap to import: no torch here (the runner imports it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import WorkbenchError
from .job_files import (FINISHING_S, RESUMABLE_STATUSES, RUNNER_MODULE, TERMINAL_STATUSES, JobFiles,
                        checkpoint_step, default_max_concurrent, hostname, latest_checkpoint, read_spec)
from .job_liveness import pid_alive, refresh_statuses, wait_runner_gone
from .registry import ACTIVE_JOB_STATUSES, JobRecord, MetricRecord, ModelRecord, Registry, now_iso

# ---------------------------------------------------------------- launch


def launch_job(ctx, config, nproc: int = 1, nnodes: int = 1, node_rank: int = 0,
               master_addr: str | None = None, master_port: int | None = None,
               max_concurrent: int | None = None) -> JobRecord:
    """Create a queued job for `config` (a TrainConfig) and start its detached process. Returns at once.

    nproc > 1 (or nnodes > 1) runs the training under torchrun; the global batch is split over all ranks.
    max_concurrent: how many jobs may run at once on the job's device (default $WORKBENCH_MAX_JOBS or 1);
    a job over the limit waits in status "queued"."""
    config.validate(ctx)
    for label, value, low in (("nproc", nproc, 1), ("nnodes", nnodes, 1), ("node-rank", node_rank, 0)):
        if not isinstance(value, int) or value < low:
            raise WorkbenchError(f"--{label} must be an integer of at least {low} (got {value!r})")
    if node_rank >= nnodes:
        raise WorkbenchError(f"--node-rank {node_rank} must be below --nnodes {nnodes}")
    world = nproc * nnodes
    if config.batch % world:
        raise WorkbenchError(f"--batch {config.batch} does not split evenly over {world} processes")
    if nnodes > 1 and not master_addr:
        raise WorkbenchError("--nnodes > 1 needs --master-addr (the address of node 0)")
    if max_concurrent is not None and max_concurrent < 1:
        raise WorkbenchError(f"--max-concurrent must be at least 1 (got {max_concurrent})")
    for other in ctx.registry.list_jobs(ACTIVE_JOB_STATUSES):
        if other.out_model == config.out:
            raise WorkbenchError(f"job {other.id} ({other.status}) already trains '{config.out}'; "
                                 "pick another --out")
    launch = {"nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "master_addr": master_addr,
              "master_port": master_port,
              "max_concurrent": max_concurrent or default_max_concurrent()}
    job = ctx.registry.create_job(config.base_model, config.out, config.dataset, config.to_dict(),
                                  config.steps)
    files = JobFiles(ctx, job.id)
    if files.dir.exists() and any(files.dir.iterdir()):  # left by an earlier registry of this workspace
        files.dir.rename(files.dir.with_name(f"{job.id}.old-{int(time.time())}"))
    files.dir.mkdir(parents=True, exist_ok=True)
    spec = {"job_id": job.id, "home": str(ctx.ws.home), "config": config.to_dict(), "launch": launch}
    files.spec.write_text(json.dumps(spec, indent=2) + "\n")
    _spawn(ctx, job.id, resume=False)
    return ctx.registry.get_job(job.id)


def _spawn(ctx, job_id: int, resume: bool) -> None:
    """Start the runner in its own session: stdin from /dev/null, stdout+stderr to stdout.log."""
    files = JobFiles(ctx, job_id)
    command = [sys.executable, "-m", RUNNER_MODULE, "--home", str(ctx.ws.home), "--job", str(job_id)]
    if resume:
        command.append("--resume")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        with open(files.stdout, "ab") as out, open(os.devnull, "rb") as devnull:
            process = subprocess.Popen(command, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=files.dir, env=env, start_new_session=True, close_fds=True)
    except OSError as error:
        ctx.registry.set_job_status_if(job_id, ["queued"], status="failed", ended_at=now_iso(),
                                       error=f"could not start the job process: {error}")
        raise WorkbenchError(f"could not start job {job_id}: {error}") from None
    # Reap it when it ends, so a long-lived launcher (the app, a test) keeps no zombie that would
    # still answer os.kill(pid, 0).
    threading.Thread(target=process.wait, name=f"reap-job-{job_id}", daemon=True).start()
    ctx.registry.set_job_status_if(job_id, ["queued"], pid=process.pid, host=hostname())


# ---------------------------------------------------------------- watch


def get_job(ctx, job_id: int, refresh: bool = True) -> JobRecord:
    if refresh:
        refresh_statuses(ctx)
    return ctx.registry.get_job(job_id)


def list_jobs(ctx, statuses: list[str] | None = None) -> list[JobRecord]:
    refresh_statuses(ctx)
    return ctx.registry.list_jobs(statuses)


def job_model(ctx, job_id: int) -> ModelRecord | None:
    """The model a job registered (at completion, or through register_job_model), newest first."""
    found = [m for m in ctx.registry.list_models() if m.job_id == int(job_id)]
    return found[-1] if found else None


def job_details(ctx, job_id: int) -> dict:
    """Everything `jobs show` prints: the record, its files, its model, and its latest losses."""
    from dataclasses import asdict

    job = get_job(ctx, job_id)
    files = JobFiles(ctx, job_id)
    spec = json.loads(files.spec.read_text()) if files.spec.exists() else {}
    last = {}
    for split in ("train", "val"):
        row = ctx.registry.last_metric(job_id, split)
        if row is not None:
            last[split] = {"step": row.step, "loss": row.loss}
    model = job_model(ctx, job_id)
    return {**asdict(job), "launch": spec.get("launch", {}), "dir": str(files.dir),
            "stdout_log": str(files.stdout), "log_jsonl": str(files.log),
            "model": model.name if model else None, "last_losses": last}


def wait_job(ctx, job_id: int, timeout: float | None = None, poll: float = 0.5) -> JobRecord:
    """Block until the job ends (any terminal status). Raises WorkbenchError after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = get_job(ctx, job_id)
        if job.status in TERMINAL_STATUSES:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WorkbenchError(f"job {job_id} is still {job.status} after {timeout:g} s")
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def follow_metrics(ctx, job_id: int, after_id: int = 0, poll: float = 0.25,
                   until_done: bool = True) -> Iterator[MetricRecord]:
    """Metric rows of a job as they are written (polling the registry by last id seen). With
    until_done, ends once the job has ended and every row has been yielded."""
    registry: Registry = ctx.registry
    registry.get_job(job_id)
    last_check = 0.0
    while True:
        rows = registry.metrics(job_id, after_id=after_id)
        for row in rows:
            after_id = row.id
            yield row
        if rows:
            continue
        if until_done and time.monotonic() - last_check >= 1.0:
            last_check = time.monotonic()
            if get_job(ctx, job_id).status in TERMINAL_STATUSES:
                rows = registry.metrics(job_id, after_id=after_id)  # rows of the final flush
                yield from rows
                return
        time.sleep(poll)


# ---------------------------------------------------------------- control


def cancel_job(ctx, job_id: int, force: bool = False, timeout: float | None = None) -> JobRecord:
    """Ask a job to stop: SIGTERM, after which it saves a checkpoint and ends "cancelled".

    A second cancel, force=True, or the job still running after `timeout` seconds kills its whole
    process group (SIGKILL); the job is then marked cancelled with its last complete checkpoint."""
    job = get_job(ctx, job_id)
    if job.status not in ACTIVE_JOB_STATUSES:
        raise WorkbenchError(f"job {job_id} is {job.status}; there is nothing to cancel")
    files = JobFiles(ctx, job_id)
    escalate = force or files.stop.exists()
    files.stop.parent.mkdir(parents=True, exist_ok=True)
    files.stop.write_text(now_iso() + "\n")
    local = job.host in (None, hostname())
    if job.pid is None or (local and not pid_alive(job.pid)):
        ctx.registry.set_job_status_if(job_id, ACTIVE_JOB_STATUSES, status="cancelled", ended_at=now_iso(),
                                       last_checkpoint=latest_checkpoint(ctx, job_id))
        return ctx.registry.get_job(job_id)
    if not local:
        # The STOP file reaches it where the workspace is shared; signals cannot cross machines.
        if escalate:
            raise WorkbenchError(f"job {job_id} runs on {job.host}; kill it there (pid {job.pid})")
        return ctx.registry.get_job(job_id)
    if escalate:
        return _kill(ctx, job)
    os.kill(job.pid, signal.SIGTERM)
    if timeout is not None:
        try:
            return wait_job(ctx, job_id, timeout=timeout, poll=0.2)
        except WorkbenchError:
            return _kill(ctx, ctx.registry.get_job(job_id))
    return ctx.registry.get_job(job_id)


def _kill(ctx, job: JobRecord) -> JobRecord:
    try:
        os.killpg(job.pid, signal.SIGKILL)  # the runner leads its own session: its group is the job
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while pid_alive(job.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.registry.set_job_status_if(job.id, ACTIVE_JOB_STATUSES, status="cancelled", ended_at=now_iso(),
                                   last_checkpoint=latest_checkpoint(ctx, job.id),
                                   error="killed (SIGKILL) by cancel")
    return ctx.registry.get_job(job.id)


def resume_job(ctx, job_id: int) -> JobRecord:
    """Continue a failed, cancelled or interrupted job from its last complete checkpoint to the end:
    same job id, a new process, status back to queued/running. Metric rows past the checkpoint are
    dropped (the resumed run writes them again)."""
    job = get_job(ctx, job_id)
    if job.status not in RESUMABLE_STATUSES:
        hint = "it is still active" if job.status in ACTIVE_JOB_STATUSES else "it has completed"
        raise WorkbenchError(f"job {job_id} is {job.status}; only failed, cancelled or interrupted "
                             f"jobs resume ({hint})")
    read_spec(ctx, job_id)
    # A runner that has reported its own end (cancelled, failed) may still be finishing (closing files,
    # ending its workers): give it a moment rather than refuse a resume pressed right after a cancel.
    # One that others called interrupted but that lives has stalled: refuse at once.
    finishing = FINISHING_S if job.status in ("cancelled", "failed") else 0.0
    if job.host in (None, hostname()) and not wait_runner_gone(ctx, job, finishing):
        raise WorkbenchError(f"job {job_id}'s runner (pid {job.pid}) is still alive, though its heartbeat "
                             f"stalled; wait for it (`workbench jobs wait {job_id}`) or cancel it")
    if ctx.registry.find_model(job.out_model):
        raise WorkbenchError(f"a model named '{job.out_model}' is already registered; a resumed job "
                             "would register its result under that name")
    checkpoint = latest_checkpoint(ctx, job_id)
    files = JobFiles(ctx, job_id)
    # heartbeat_at/heartbeat_mono = now: the grace period before its new process beats for itself (the
    # old runner's last beat may be older than the stale limit, which would call the new one interrupted).
    if not ctx.registry.set_job_status_if(job_id, RESUMABLE_STATUSES, status="queued", pid=None,
                                          heartbeat_at=time.time(), heartbeat_mono=time.monotonic(),
                                          ended_at=None, error=None,
                                          last_checkpoint=checkpoint):
        raise WorkbenchError(f"job {job_id} changed while resuming it; look again with `workbench jobs show`")
    ctx.registry.delete_metrics_after(job_id, checkpoint_step(checkpoint) or 0)
    drop_log_rows_after(files.log, checkpoint_step(checkpoint) or 0)
    for stale in (files.stop, files.result, files.error):
        stale.unlink(missing_ok=True)
    _spawn(ctx, job_id, resume=checkpoint is not None)
    return ctx.registry.get_job(job_id)


def drop_log_rows_after(log: Path, step: int) -> None:
    """Keep log.jsonl's rows up to `step`: the resumed run writes the later ones again."""
    if not log.exists():
        return
    kept = [line for line in log.read_text(errors="replace").splitlines(keepends=True)
            if _log_step(line) <= step]
    staging = log.with_name(f".{log.name}.{os.getpid()}")
    staging.write_text("".join(kept))
    staging.replace(log)


def _log_step(line: str) -> float:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return float("inf")  # a torn last line from a kill: dropped
    return step if isinstance(step, (int, float)) else 0


def register_job_model(ctx, job_id: int, name: str | None = None) -> ModelRecord:
    """Register the model saved in a job's last complete checkpoint (e.g. after a cancel).
    Default name: <out>-step<N>."""
    from .training.checkpoints import register_result
    from .training.config import TrainConfig

    job = get_job(ctx, job_id)
    if job.status in ACTIVE_JOB_STATUSES:
        raise WorkbenchError(f"job {job_id} is {job.status}; cancel it first (or wait for its end)")
    checkpoint = latest_checkpoint(ctx, job_id)
    if checkpoint is None:
        raise WorkbenchError(f"job {job_id} has no complete checkpoint to register")
    config = TrainConfig.from_dict(read_spec(ctx, job_id)["config"])
    config.out = name or f"{job.out_model}-step{checkpoint_step(checkpoint)}"
    if ctx.registry.find_model(config.out):
        raise WorkbenchError(f"a model named '{config.out}' is already registered; pass --name")
    return register_result(ctx, config, Path(checkpoint), job_id=job_id)


