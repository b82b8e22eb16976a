"""Schema migrations: migration i brings workbench.db from version i to i+1 (PRAGMA user_version).

Never edit a released migration; append a new one. Registry backs the file up before applying any.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath

from ..sqlite_import import import_sqlite_utils
from .paths import PATH_COLUMNS

sqlite_utils = import_sqlite_utils()


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


def _m3_job_device(db: sqlite_utils.Database) -> None:
    db["jobs"].add_column("device", str)


def _m4_relative_paths(db: sqlite_utils.Database) -> None:
    """Paths inside the workspace become relative to it, so a copied or moved workspace keeps working.

    A workspace copied before this migration still holds the original's absolute paths: a path of the
    form <elsewhere>/models/<name> (data/, sessions/, jobs/ alike) whose counterpart exists in this
    workspace is taken as this workspace's own."""
    home = Path(db.execute("PRAGMA database_list").fetchone()[2]).parent
    for table, column, folder in PATH_COLUMNS:
        rows = db.execute(f"SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
        for rowid, stored in rows:
            relative = _inside(home, stored, folder)
            if relative is not None:
                db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", [relative, rowid])


def _inside(home: Path, stored: str, folder: str) -> str | None:
    path = PurePath(stored)
    if not path.is_absolute():
        return None
    try:
        return str(path.relative_to(home))
    except ValueError:
        pass
    parts = path.parts
    if folder in parts[:-1]:
        tail = parts[len(parts) - 1 - parts[::-1].index(folder):]
        if (home.joinpath(*tail)).exists():
            return str(PurePath(*tail))
    return None


def _m5_job_monotonic_heartbeat(db: sqlite_utils.Database) -> None:
    db["jobs"].add_column("heartbeat_mono", float)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _m1_initial, _m2_job_status_index, _m3_job_device, _m4_relative_paths, _m5_job_monotonic_heartbeat,
]
SCHEMA_VERSION = len(MIGRATIONS)
