"""The registry's job tables: training jobs (create, update, compare-and-set on status, the per-device
queue of job slots, deletion) and their metric rows (appended in batches, polled by id).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from ..errors import WorkbenchError
from .database import RegistryDatabase
from .records import JobRecord, MetricRecord, now_iso


class JobRows(RegistryDatabase):
    """Rows of the jobs and metrics tables."""

    # ------------------------------------------------------------ jobs

    def create_job(self, base_model: str, out_model: str, dataset: str | None, config: dict,
                   total_steps: int, status: str = "queued") -> JobRecord:
        with self.transaction() as db:
            row = {
                "status": status, "base_model": base_model, "out_model": out_model, "dataset": dataset,
                "config": json.dumps(config), "created_at": now_iso(), "step": 0,
                "total_steps": total_steps,
            }
            job_id = db["jobs"].insert(row).last_pk
        return self.get_job(job_id)

    def get_job(self, job_id: int) -> JobRecord:
        rows = self._select(JobRecord, "jobs", "id = ?", [int(job_id)]) if 0 < int(job_id) < 2**63 else []
        if not rows:
            raise WorkbenchError(f"unknown job {job_id} (see `workbench jobs list`)")
        return rows[0]

    def list_jobs(self, statuses: Iterable[str] | None = None) -> list[JobRecord]:
        if statuses:
            statuses = list(statuses)
            marks = ", ".join("?" for _ in statuses)
            return self._select(JobRecord, "jobs", f"status in ({marks})", statuses, order_by="id")
        return self._select(JobRecord, "jobs", order_by="id")

    def update_job(self, job_id: int, **changes: Any) -> None:
        unknown = set(changes) - {f.name for f in fields(JobRecord)}
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        changes = self._job_changes(changes)
        with self.transaction() as db:
            db["jobs"].update(int(job_id), changes)

    def _job_changes(self, changes: dict) -> dict:
        changes = dict(changes)
        if "config" in changes:
            changes["config"] = json.dumps(changes["config"])
        if "last_checkpoint" in changes:
            changes["last_checkpoint"] = self._stored(changes["last_checkpoint"])
        return changes

    def set_job_status_if(self, job_id: int, expected: Iterable[str], **changes: Any) -> bool:
        """Compare-and-set on status: apply `changes` only while the job is in one of `expected`."""
        expected = list(expected)
        changes = self._job_changes(changes)
        sets = ", ".join(f"{key} = ?" for key in changes)
        marks = ", ".join("?" for _ in expected)
        with self.transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({marks})",
                [*changes.values(), int(job_id), *expected],
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------ metrics

    def add_metrics(self, job_id: int, rows: list[dict], job_step: int | None = None,
                    timeout_ms: int | None = None) -> None:
        """Append a batch of metric rows in one short transaction (and the job's step, if given)."""
        if not rows and job_step is None:
            return
        stamped = [{"job_id": int(job_id), "created_at": time.time(), **row} for row in rows]
        with self.transaction(timeout_ms) as db:
            if stamped:
                db["metrics"].insert_all(stamped)
            if job_step is not None:
                db.execute("UPDATE jobs SET step = ? WHERE id = ?", [int(job_step), int(job_id)])

    def last_metric(self, job_id: int, split: str) -> MetricRecord | None:
        rows = self._select(MetricRecord, "metrics", "job_id = ? AND split = ?", [int(job_id), split],
                            order_by="id DESC", limit=1)
        return rows[0] if rows else None

    def delete_job(self, job_id: int) -> None:
        """Drop a job's row and metric rows; models it made lose the link to it (ids can be reused)."""
        with self.transaction() as db:
            db.execute("DELETE FROM metrics WHERE job_id = ?", [int(job_id)])
            db.execute("UPDATE models SET job_id = NULL WHERE job_id = ?", [int(job_id)])
            db.execute("DELETE FROM jobs WHERE id = ?", [int(job_id)])

    def delete_metrics_after(self, job_id: int, step: int) -> int:
        """Drop a job's metric rows past `step` (a resume replays them from its checkpoint)."""
        with self.transaction() as db:
            return db.execute("DELETE FROM metrics WHERE job_id = ? AND step > ?",
                              [int(job_id), int(step)]).rowcount

    def claim_job_slot(self, job_id: int, host: str, device: str, limit: int, alive_after: float,
                       **changes: Any) -> str:
        """The job queue: move a queued job to running when its device has a free slot.

        Returns "claimed", "wait" (slots full, or an older live queued job goes first) or "gone" (the
        job is no longer queued, e.g. cancelled). One BEGIN IMMEDIATE transaction, so two runners never
        take the same slot."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", [int(job_id)]).fetchone()
            if row is None or row[0] != "queued":
                return "gone"
            running = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND host = ? AND device = ?",
                [host, device]).fetchone()[0]
            # Older live queued jobs go first, including those still resolving their device.
            ahead = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND host = ? AND id < ?"
                " AND (device = ? OR device IS NULL) AND heartbeat_at > ?",
                [host, int(job_id), device, alive_after]).fetchone()[0]
            if running + ahead >= limit:
                return "wait"
            changes = {"status": "running", "host": host, "device": device, **changes}
            sets = ", ".join(f"{key} = ?" for key in changes)
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*changes.values(), int(job_id)])
            return "claimed"

    def metrics(self, job_id: int, after_id: int = 0, split: str | None = None) -> list[MetricRecord]:
        """Metric rows of a job with id > after_id, oldest first: poll with the last id seen."""
        where, args = "job_id = ? AND id > ?", [int(job_id), int(after_id)]
        if split:
            where, args = where + " AND split = ?", args + [split]
        return self._select(MetricRecord, "metrics", where, args, order_by="id")
