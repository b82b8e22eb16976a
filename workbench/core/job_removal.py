"""Deleting a finished job: its folder (checkpoints, logs), its metric rows and its registry row.

The models it registered stay: their files live under models/, copied out of the job's checkpoints, and
their lineage to the base and the dataset is kept on the model; only the link to the job goes (a later
job may take the same id)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from .errors import WorkbenchError
from .job_files import FINISHING_S, JobFiles
from .job_liveness import wait_runner_gone
from .jobs import get_job
from .registry import ACTIVE_JOB_STATUSES


@dataclass
class RemovedJob:
    id: int
    status: str
    out_model: str
    freed_bytes: int
    kept_models: list[str]


def _folder_bytes(folder) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def remove_job(ctx, job_id: int) -> RemovedJob:
    """Delete a job that has ended (completed, failed, cancelled, interrupted). An active job is refused:
    cancel it first. Returns what was removed and which models it had made (kept)."""
    job = get_job(ctx, job_id)
    files = JobFiles(ctx, job_id)
    if job.status in ACTIVE_JOB_STATUSES:
        raise WorkbenchError(f"job {job_id} is {job.status}; cancel it first (`workbench jobs cancel "
                             f"{job_id}`), then delete it")
    if not wait_runner_gone(ctx, job, FINISHING_S):  # it has reported its end and is closing down
        raise WorkbenchError(f"job {job_id}'s process {job.pid} is still finishing; try again in a moment")
    kept = [m.name for m in ctx.registry.list_models() if m.job_id == job.id]
    freed = _folder_bytes(files.dir)
    ctx.registry.delete_job(job.id)  # the row first: a half-deleted folder then never looks like a job
    if files.dir.exists():
        shutil.rmtree(files.dir, ignore_errors=True)
    return RemovedJob(id=job.id, status=job.status, out_model=job.out_model, freed_bytes=freed, kept_models=kept)
