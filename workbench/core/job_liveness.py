"""Whether a job's runner lives: its flock on runner.lock, its process, its heartbeat; and marking
jobs whose runner is gone as interrupted (refresh_statuses)."""

from __future__ import annotations

import fcntl
import os
import time
from datetime import datetime
from pathlib import Path

from .job_files import RUNNER_MODULE, JobFiles, hostname, latest_checkpoint, stale_after
from .registry import ACTIVE_JOB_STATUSES, JobRecord, now_iso
from .staging import process_alive


def take_runner_lock(files: JobFiles, wait_s: float = 10.0) -> int | None:
    """The runner's flock on jobs/<id>/runner.lock, held until its process ends (the kernel drops it
    then, however it ends). Returns the descriptor, or None while another process holds it. Waits a
    little: a status check may hold it shared for an instant."""
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A flock belongs to the open file description, which a forked child (a compile or data
            # worker) shares: close it there, so the lock ends with this runner and not with its children.
            os.register_at_fork(after_in_child=lambda: _close_quietly(fd))
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def wait_runner_gone(ctx, job: JobRecord, timeout: float) -> bool:
    """Wait up to `timeout` s for the job's runner to end; whether it has."""
    deadline = time.monotonic() + timeout
    while runner_lives(ctx, job):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def runner_alive(ctx, job_id: int) -> bool:
    """Whether a runner holds the job's lock (it is alive, however long it has stalled)."""
    try:
        fd = os.open(JobFiles(ctx, job_id).lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def runner_lives(ctx, job: JobRecord) -> bool:
    """The job's lock is held and its recorded runner process (when one is recorded) is alive. The pid
    check matters because a process forked by the runner (a compile worker) inherits the locked file
    description and can hold the lock after the runner itself was killed."""
    return runner_alive(ctx, job.id) and (not job.pid or pid_alive(job.pid))


def pid_alive(pid: int | None) -> bool:
    """Whether `pid` is a live job runner on this machine (a zombie or a reused pid is not)."""
    if not pid or not process_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): os.kill is all we have
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    # An empty cmdline: the process is in the middle of exec (the launcher's Popen returns before the
    # kernel has set up the new program's arguments), so it is not yet anything else either.
    return state not in ("Z", "X") and (not cmdline or RUNNER_MODULE.encode() in cmdline)


def _age_s(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return time.time() - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def refresh_statuses(ctx, stale_s: float | None = None) -> list[JobRecord]:
    """Mark queued/running jobs whose process is gone (same host) or whose heartbeat is older than
    `stale_s` (default $WORKBENCH_JOB_STALE_S or 30 s) as "interrupted", with their last complete
    checkpoint; a job whose runner still holds its lock is alive, and back to "running" if it was
    called interrupted. Returns the jobs it changed."""
    stale_s = stale_after() if stale_s is None else stale_s
    here, now, mono, changed = hostname(), time.time(), time.monotonic(), []
    for job in ctx.registry.list_jobs(["interrupted"]):
        # Declared dead while its runner lived (a stall, an older workbench): it is running.
        if job.host in (None, here) and runner_lives(ctx, job) and ctx.registry.set_job_status_if(
                job.id, ["interrupted"], status="running", ended_at=None, error=None):
            changed.append(ctx.registry.get_job(job.id))
    for job in ctx.registry.list_jobs(ACTIVE_JOB_STATUSES):
        local = job.host in (None, here)
        if local and runner_lives(ctx, job):
            continue  # its runner lives: slow is not dead
        reason = None
        if job.pid and local and not pid_alive(job.pid):
            reason = f"its process {job.pid} is gone"
        elif local and job.heartbeat_mono is not None and 0 <= job.heartbeat_mono <= mono:
            if mono - job.heartbeat_mono > stale_s:  # the monotonic clock: immune to clock jumps
                reason = f"no heartbeat for {mono - job.heartbeat_mono:.0f} s"
        elif job.heartbeat_at is not None and now - job.heartbeat_at > stale_s:
            reason = f"no heartbeat for {now - job.heartbeat_at:.0f} s"
        elif job.pid is None and job.heartbeat_at is None and _age_s(job.created_at) > stale_s:
            reason = "its process never started"
        if reason is None:
            continue
        checkpoint = latest_checkpoint(ctx, job.id) or job.last_checkpoint
        if ctx.registry.set_job_status_if(job.id, [job.status], status="interrupted", ended_at=now_iso(),
                                          last_checkpoint=checkpoint, error=f"interrupted: {reason}"):
            changed.append(ctx.registry.get_job(job.id))
    return changed
