"""The SQLite registry: typed records in, typed records out.

One file (workbench.db) in WAL mode so readers (the app, `jobs logs --follow`) never block the writer (a
training job). Every write is a short transaction; the busy timeout makes concurrent writers wait instead
of failing with "database is locked". The schema version lives in PRAGMA user_version and grows through
the ordered MIGRATIONS below.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from .errors import WorkbenchError
from .sqlite_import import import_sqlite_utils

sqlite_utils = import_sqlite_utils()

BUSY_TIMEOUT_MS = 30_000

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE_JOB_STATUSES = ("queued", "running")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- records


@dataclass
class ModelRecord:
    name: str
    path: str
    arch: str
    params: int
    context_length: int
    source: str  # created | imported | fine-tuned
    parent: str | None = None
    job_id: int | None = None
    dataset: str | None = None
    created_at: str = field(default_factory=now_iso)
    sha256: str | None = None
    adapter: bool = False  # a PEFT adapter folder whose base is `parent`
    referenced: bool = False  # registered in place (not copied into models/)
    meta: dict = field(default_factory=dict)


@dataclass
class DatasetRecord:
    name: str
    kind: str  # text | instructions
    path: str
    chars: int
    tokens: int
    sha256: str
    splits: dict = field(default_factory=dict)  # {"train": n, "val": n, "test": n} (tokens or records)
    seed: int = 0
    source: str | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class JobRecord:
    id: int
    status: str
    base_model: str
    out_model: str
    dataset: str | None = None
    config: dict = field(default_factory=dict)
    pid: int | None = None
    host: str | None = None
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    ended_at: str | None = None
    step: int = 0
    total_steps: int = 0
    last_checkpoint: str | None = None
    error: str | None = None
    heartbeat_at: float | None = None  # unix time, for staleness checks
    device: str | None = None  # device the job holds (cpu, cuda:0, ...): the queue's slot key


@dataclass
class MetricRecord:
    id: int
    job_id: int
    step: int
    split: str  # train | val
    loss: float
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    created_at: float | None = None


@dataclass
class EvaluationRecord:
    id: int
    model: str
    metric: str
    value: float
    target: str | None = None  # dataset name, file or refs the metric was computed on
    settings: dict = field(default_factory=dict)
    model_sha256: str | None = None
    data_sha256: str | None = None
    cache_key: str | None = None
    created_at: str = field(default_factory=now_iso)
    details: dict = field(default_factory=dict)


@dataclass
class SessionRecord:
    id: str
    kind: str  # chat | dialogue
    models: list = field(default_factory=list)
    path: str = ""
    title: str = ""
    turns: int = 0
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


R = TypeVar("R")

# Columns stored as JSON text and the python types they decode to.
_JSON_COLUMNS = {"meta", "splits", "config", "settings", "details", "models"}
_BOOL_COLUMNS = {"adapter", "referenced"}


def _to_row(record: Any) -> dict:
    row = asdict(record)
    for key in _JSON_COLUMNS & row.keys():
        row[key] = json.dumps(row[key])
    for key in _BOOL_COLUMNS & row.keys():
        row[key] = int(row[key])
    return row


def _from_row(cls: type[R], row: dict) -> R:
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in row.items() if k in names}
    for key in _JSON_COLUMNS & values.keys():
        values[key] = json.loads(values[key]) if values[key] else ({} if key != "models" else [])
    for key in _BOOL_COLUMNS & values.keys():
        values[key] = bool(values[key])
    return cls(**values)


# ---------------------------------------------------------------- migrations


def _m1_initial(db: sqlite_utils.Database) -> None:
    db["models"].create(
        {
            "name": str, "path": str, "arch": str, "params": int, "context_length": int, "source": str,
            "parent": str, "job_id": int, "dataset": str, "created_at": str, "sha256": str,
            "adapter": int, "referenced": int, "meta": str,
        },
        pk="name",
    )
    db["datasets"].create(
        {
            "name": str, "kind": str, "path": str, "chars": int, "tokens": int, "sha256": str,
            "splits": str, "seed": int, "source": str, "created_at": str,
        },
        pk="name",
    )
    db["jobs"].create(
        {
            "id": int, "status": str, "base_model": str, "out_model": str, "dataset": str, "config": str,
            "pid": int, "host": str, "created_at": str, "started_at": str, "ended_at": str, "step": int,
            "total_steps": int, "last_checkpoint": str, "error": str, "heartbeat_at": float,
        },
        pk="id",
    )
    db["metrics"].create(
        {
            "id": int, "job_id": int, "step": int, "split": str, "loss": float, "lr": float,
            "grad_norm": float, "tokens_per_s": float, "created_at": float,
        },
        pk="id",
    )
    db["metrics"].create_index(["job_id", "id"])
    db["evaluations"].create(
        {
            "id": int, "model": str, "metric": str, "value": float, "target": str, "settings": str,
            "model_sha256": str, "data_sha256": str, "cache_key": str, "created_at": str, "details": str,
        },
        pk="id",
    )
    db["evaluations"].create_index(["cache_key"])
    db["evaluations"].create_index(["model"])
    db["sessions"].create(
        {
            "id": str, "kind": str, "models": str, "path": str, "title": str, "turns": int,
            "created_at": str, "updated_at": str,
        },
        pk="id",
    )


def _m2_job_status_index(db: sqlite_utils.Database) -> None:
    db["jobs"].create_index(["status"])


# Ordered: migration i brings the schema from version i to i+1. Never edit a released one; append.
def _m3_job_device(db: sqlite_utils.Database) -> None:
    db["jobs"].add_column("device", str)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1_initial, _m2_job_status_index, _m3_job_device]
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------- the registry


class Registry:
    """A small repository API over workbench.db. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, migrate: bool = True):
        self.path = Path(path)
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(conn, execute_plugins=False)  # no plugins: skips a 0.1-0.3 s entry-point scan
        self._lock = threading.RLock()
        if migrate:
            self.migrate()

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
        self.db.conn.close()

    # ------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction. Returns the resulting version."""
        with self._lock:
            while True:
                conn = self.db.conn
                conn.execute("BEGIN IMMEDIATE")  # one migrator at a time across processes
                try:
                    version = self.schema_version
                    if version > SCHEMA_VERSION:
                        raise WorkbenchError(
                            f"{self.path} has schema version {version}, newer than this workbench "
                            f"({SCHEMA_VERSION}); upgrade workbench."
                        )
                    if version == SCHEMA_VERSION:
                        conn.execute("COMMIT")
                        return version
                    MIGRATIONS[version](self.db)
                    conn.execute(f"PRAGMA user_version = {version + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction (BEGIN IMMEDIATE waits on the busy timeout, then commits)."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _select(self, cls: type[R], table: str, where: str | None = None, args: Iterable = (),
                order_by: str | None = None, limit: int | None = None) -> list[R]:
        with self._lock:
            rows = self.db[table].rows_where(where, list(args), order_by=order_by, limit=limit)
            return [_from_row(cls, row) for row in rows]

    # ------------------------------------------------------------ models

    def add_model(self, record: ModelRecord) -> ModelRecord:
        try:
            with self.transaction() as db:
                db["models"].insert(_to_row(record))
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
            db["models"].update(name, _to_row(record))
        return record

    def rename_model(self, old: str, new: str, new_path: str) -> ModelRecord:
        record = self.get_model(old)
        if self.find_model(new):
            raise WorkbenchError(f"a model named '{new}' is already registered")
        with self.transaction() as db:
            db.execute("UPDATE models SET name = ?, path = ? WHERE name = ?", [new, new_path, old])
            db.execute("UPDATE models SET parent = ? WHERE parent = ?", [new, old])
            db.execute("UPDATE evaluations SET model = ? WHERE model = ?", [new, old])
        record.name, record.path = new, new_path
        return record

    def remove_model(self, name: str) -> None:
        self.get_model(name)
        with self.transaction() as db:
            db["models"].delete(name)

    def children_of(self, name: str) -> list[ModelRecord]:
        return self._select(ModelRecord, "models", "parent = ?", [name], order_by="created_at")

    # ------------------------------------------------------------ datasets

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        try:
            with self.transaction() as db:
                db["datasets"].insert(_to_row(record))
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
        rows = self._select(JobRecord, "jobs", "id = ?", [int(job_id)])
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
        if "config" in changes:
            changes["config"] = json.dumps(changes["config"])
        with self.transaction() as db:
            db["jobs"].update(int(job_id), changes)

    def set_job_status_if(self, job_id: int, expected: Iterable[str], **changes: Any) -> bool:
        """Compare-and-set on status: apply `changes` only while the job is in one of `expected`."""
        expected = list(expected)
        sets = ", ".join(f"{key} = ?" for key in changes)
        marks = ", ".join("?" for _ in expected)
        with self.transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({marks})",
                [*changes.values(), int(job_id), *expected],
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------ metrics

    def add_metrics(self, job_id: int, rows: list[dict], job_step: int | None = None) -> None:
        """Append a batch of metric rows in one short transaction (and the job's step, if given)."""
        if not rows and job_step is None:
            return
        stamped = [{"job_id": int(job_id), "created_at": time.time(), **row} for row in rows]
        with self.transaction() as db:
            if stamped:
                db["metrics"].insert_all(stamped)
            if job_step is not None:
                db.execute("UPDATE jobs SET step = ? WHERE id = ?", [int(job_step), int(job_id)])

    def last_metric(self, job_id: int, split: str) -> MetricRecord | None:
        rows = self._select(MetricRecord, "metrics", "job_id = ? AND split = ?", [int(job_id), split],
                            order_by="id DESC", limit=1)
        return rows[0] if rows else None

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
            db["sessions"].upsert(_to_row(record), pk="id")
        return record

    def get_session(self, session_id: str) -> SessionRecord:
        rows = self._select(SessionRecord, "sessions", "id = ?", [session_id])
        if not rows:
            raise WorkbenchError(f"unknown session '{session_id}' (see `workbench sessions list`)")
        return rows[0]

    def list_sessions(self) -> list[SessionRecord]:
        return self._select(SessionRecord, "sessions", order_by="created_at, id")
