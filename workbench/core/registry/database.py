"""The registry's connection to workbench.db: opening, schema migrations, transactions and the mapping of
records to rows, shared by the per-table row classes that Registry (store.py) combines.

One file (workbench.db) in WAL mode so readers (the app, `jobs logs --follow`) never block the writer (a
training job). Every write is a short transaction; the busy timeout makes concurrent writers wait instead
of failing with "database is locked". Opening only reads unless a migration is due (then it backs the
file up first). Paths are stored relative to the workspace (see paths.py). Every SQLite failure reaches
the caller as one WorkbenchError line naming the file (see opening.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..sqlite_import import import_sqlite_utils
from . import opening
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .paths import from_stored, to_stored
from .records import DatasetRecord, JobRecord, ModelRecord, R, SessionRecord, from_row, to_row

sqlite_utils = import_sqlite_utils()

BUSY_TIMEOUT_MS = 30_000
# Record fields holding a path, per record type (stored relative to the workspace).
_PATH_FIELDS = {ModelRecord: "path", DatasetRecord: "path", SessionRecord: "path", JobRecord: "last_checkpoint"}


class RegistryDatabase:
    """workbench.db opened for the registry: the connection, its lock, transactions and row mapping."""

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
