"""The SQLite registry: typed records in, typed records out.

One file (workbench.db) in WAL mode so readers (the app, `jobs logs --follow`) never block the writer (a
training job). Every write is a short transaction; the busy timeout makes concurrent writers wait instead
of failing with "database is locked". Opening only reads unless a migration is due (then it backs the
file up first). Paths are stored relative to the workspace (see paths.py). Every SQLite failure reaches
the caller as one WorkbenchError line naming the file (see opening.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..sqlite_import import import_sqlite_utils
from . import opening
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .paths import from_stored, to_stored
from .records import (DatasetRecord, EvaluationRecord, JobRecord, MetricRecord, ModelRecord, R,
                      SessionRecord, from_row, now_iso, to_row)

sqlite_utils = import_sqlite_utils()

BUSY_TIMEOUT_MS = 30_000
# Record fields holding a path, per record type (stored relative to the workspace).
_PATH_FIELDS = {ModelRecord: "path", DatasetRecord: "path", SessionRecord: "path", JobRecord: "last_checkpoint"}


class Registry:
    """A small repository API over workbench.db. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, migrate: bool = True):
        self.path = Path(path)
        self.home = Path(os.path.abspath(self.path.parent))
        self._lock = threading.RLock()
        # Set when the workspace cannot be written (a read-only mount, a full disk): reads still work,
        # every write fails with this line.
        self.readonly_reason: str | None = None
        opening.check_file(self.path)
        problem = opening.disk_problem(self.home)
        if problem and problem.endswith("read-only") and self.path.exists():
            self.readonly_reason = problem
        try:
            self._open(immutable=self.readonly_reason is not None)
        except sqlite3.Error as error:
            problem = opening.disk_problem(self.home)
            if problem is None or not self.path.exists() or self.path.stat().st_size == 0:
                raise opening.user_error(error, self.path) from None
            self.readonly_reason = problem  # a full disk cannot even hold SQLite's -shm file: read only
            try:
                self._open(immutable=True)
            except sqlite3.Error as again:
                raise opening.user_error(again, self.path) from None
        if migrate:
            self.migrate()

    def _open(self, immutable: bool) -> None:
        conn = opening.connect(self.path, BUSY_TIMEOUT_MS / 1000, immutable=immutable)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # parses the file: fails here if damaged
            if not immutable and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                # Switching to WAL writes the header: only for a new file or one in another mode.
                self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        opening.note_opened(self.path)  # no plugins: skips a 0.1-0.3 s entry-point scan

    @staticmethod
    def _retry_locked(action: Callable[[], Any], attempts: int = 50) -> Any:
        # Switching to WAL needs a moment of exclusive access; another process opening at the same
        # instant can make it fail without consulting the busy handler.
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.db.conn.close()
        opening.note_closed(self.path)

    # ------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction, after backing the file up. Returns
        the resulting version. Takes no write lock when the schema is current."""
        with self._lock:
            version = self._read(lambda: self.schema_version)
            self._check_not_newer(version)
            if version == SCHEMA_VERSION:
                return version
            if self.readonly_reason:
                raise WorkbenchError(f"{self.path} needs a schema upgrade (version {version} to "
                                     f"{SCHEMA_VERSION}), but {self.readonly_reason}")
            if version > 0:
                self._write(lambda: opening.backup(self.db.conn, self.path, version))
            while True:
                conn = self.db.conn
                try:
                    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time across processes
                    version = self.schema_version
                    self._check_not_newer(version)
                    if version == SCHEMA_VERSION:
                        conn.execute("COMMIT")
                        return version
                    MIGRATIONS[version](self.db)
                    conn.execute(f"PRAGMA user_version = {version + 1}")
                    conn.execute("COMMIT")
                except BaseException as error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if isinstance(error, sqlite3.Error):
                        raise opening.user_error(error, self.path) from None
                    raise

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise WorkbenchError(f"{self.path} has schema version {version}, newer than this workbench "
                                 f"({SCHEMA_VERSION}); upgrade workbench.")

    def _read(self, action: Callable[[], Any]) -> Any:
        """Run `action`; an SQLite failure (but a constraint) becomes one line naming the file."""
        try:
            return action()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as error:
            raise opening.user_error(error, self.path) from None

    _write = _read

    @contextmanager
    def transaction(self, timeout_ms: int | None = None) -> Iterator[sqlite_utils.Database]:
        """A short write transaction (BEGIN IMMEDIATE waits on the busy timeout, or `timeout_ms`, then
        commits)."""
        if self.readonly_reason:
            raise WorkbenchError(f"{self.readonly_reason}; list and show commands work, changes cannot "
                                 "be saved")
        with self._lock:
            conn = self.db.conn
            if timeout_ms is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
            try:
                self._write(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield self.db
                    self._write(lambda: conn.execute("COMMIT"))
                except BaseException as error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if isinstance(error, sqlite3.Error) and not isinstance(error, sqlite3.IntegrityError):
                        raise opening.user_error(error, self.path) from None
                    raise
            finally:
                if timeout_ms is not None:
                    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    # ------------------------------------------------------------ paths

    def _stored(self, path: Any) -> Any:
        return to_stored(self.home, path)

    def _loaded(self, record: R) -> R:
        name = _PATH_FIELDS.get(type(record))
        if name:
            setattr(record, name, from_stored(self.home, getattr(record, name)))
        return record

    def _row(self, record: Any) -> dict:
        row = to_row(record)
        name = _PATH_FIELDS.get(type(record))
        if name:
            row[name] = self._stored(row[name])
        return row

    def _select(self, cls: type[R], table: str, where: str | None = None, args: Iterable = (),
                order_by: str | None = None, limit: int | None = None) -> list[R]:
        with self._lock:
            rows = self._read(lambda: list(self.db[table].rows_where(where, list(args), order_by=order_by,
                                                                      limit=limit)))
            return [self._loaded(from_row(cls, row)) for row in rows]

    # ------------------------------------------------------------ models

    def add_model(self, record: ModelRecord) -> ModelRecord:
        try:
            with self.transaction() as db:
                db["models"].insert(self._row(record))
        except sqlite3.IntegrityError:
            raise WorkbenchError(f"a model named '{record.name}' is already registered") from None
        return record

    def get_model(self, name: str) -> ModelRecord:
        found = self.find_model(name)
        if found is None:
            raise WorkbenchError(f"unknown model '{name}' (see `workbench models list`)")
        return found

    def find_model(self, name: str) -> ModelRecord | None:
        rows = self._select(ModelRecord, "models", "name = ?", [name])
        return rows[0] if rows else None

    def list_models(self) -> list[ModelRecord]:
        return self._select(ModelRecord, "models", order_by="created_at, name")

    def update_model(self, name: str, **changes: Any) -> ModelRecord:
        record = self.get_model(name)
        for key, value in changes.items():
            setattr(record, key, value)
        with self.transaction() as db:
            db["models"].update(name, self._row(record))
        return record

    def rename_model(self, old: str, new: str, new_path: str,
                     move: Callable[[], Any] | None = None) -> ModelRecord:
        """Rename a model's rows. `move` (the folder rename) runs inside the write transaction after
        the checks, so of two renames at once exactly one moves the folder and the other is refused."""
        with self.transaction() as db:
            record = self.get_model(old)
            if self.find_model(new):
                raise WorkbenchError(f"a model named '{new}' is already registered")
            self._refuse_if_training_from(old, "rename")
            if move is not None:
                move()
            db.execute("UPDATE models SET name = ?, path = ? WHERE name = ?", [new, self._stored(new_path), old])
            db.execute("UPDATE models SET parent = ? WHERE parent = ?", [new, old])
            db.execute("UPDATE evaluations SET model = ? WHERE model = ?", [new, old])
        record.name, record.path = new, new_path
        return record

    def remove_model(self, name: str) -> None:
        with self.transaction() as db:
            self.get_model(name)
            self._refuse_if_training_from(name, "remove")
            db["models"].delete(name)

    def _refuse_if_training_from(self, name: str, action: str) -> None:
        busy = [row[0] for row in self.db.execute(
            "SELECT id FROM jobs WHERE base_model = ? AND status IN ('queued', 'running') ORDER BY id", [name])]
        if busy:
            raise WorkbenchError(f"cannot {action} '{name}': queued or running job(s) "
                                 f"{', '.join(map(str, busy))} train from it; cancel them or wait for them")

    def children_of(self, name: str) -> list[ModelRecord]:
        return self._select(ModelRecord, "models", "parent = ?", [name], order_by="created_at")

    # ------------------------------------------------------------ datasets

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        try:
            with self.transaction() as db:
                db["datasets"].insert(self._row(record))
        except sqlite3.IntegrityError:
            raise WorkbenchError(f"a dataset named '{record.name}' is already registered") from None
        return record

    def get_dataset(self, name: str) -> DatasetRecord:
        found = self.find_dataset(name)
        if found is None:
            raise WorkbenchError(f"unknown dataset '{name}' (see `workbench data list`)")
        return found

    def find_dataset(self, name: str) -> DatasetRecord | None:
        rows = self._select(DatasetRecord, "datasets", "name = ?", [name])
        return rows[0] if rows else None

    def list_datasets(self) -> list[DatasetRecord]:
        return self._select(DatasetRecord, "datasets", order_by="created_at, name")

    def remove_dataset(self, name: str) -> None:
        self.get_dataset(name)
        with self.transaction() as db:
            db["datasets"].delete(name)

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

    # ------------------------------------------------------------ evaluations

    def add_evaluation(self, model: str, metric: str, value: float, target: str | None = None,
                       settings: dict | None = None, model_sha256: str | None = None,
                       data_sha256: str | None = None, cache_key: str | None = None,
                       details: dict | None = None) -> EvaluationRecord:
        row = {
            "model": model, "metric": metric, "value": float(value), "target": target,
            "settings": json.dumps(settings or {}), "model_sha256": model_sha256,
            "data_sha256": data_sha256, "cache_key": cache_key, "created_at": now_iso(),
            "details": json.dumps(details or {}),
        }
        with self.transaction() as db:
            eval_id = db["evaluations"].insert(row).last_pk
        return self._select(EvaluationRecord, "evaluations", "id = ?", [eval_id])[0]

    def evaluations(self, model: str | None = None, cache_key: str | None = None,
                    metric: str | None = None) -> list[EvaluationRecord]:
        clauses, args = [], []
        for column, value in (("model", model), ("cache_key", cache_key), ("metric", metric)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        return self._select(EvaluationRecord, "evaluations", " AND ".join(clauses) or None, args,
                            order_by="id")

    # ------------------------------------------------------------ sessions

    def save_session(self, record: SessionRecord) -> SessionRecord:
        record.updated_at = now_iso()
        with self.transaction() as db:
            db["sessions"].upsert(self._row(record), pk="id")
        return record

    def get_session(self, session_id: str) -> SessionRecord:
        rows = self._select(SessionRecord, "sessions", "id = ?", [session_id])
        if not rows:
            raise WorkbenchError(f"unknown session '{session_id}' (see `workbench sessions list`)")
        return rows[0]

    def list_sessions(self) -> list[SessionRecord]:
        return self._select(SessionRecord, "sessions", order_by="created_at, id")
