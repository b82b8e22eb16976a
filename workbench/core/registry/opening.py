"""Opening workbench.db: refuse a damaged or empty file with one line, open read-only where the
workspace cannot be written (a read-only mount, a full disk), back the file up before a migration,
and turn SQLite's errors into one line that names the file and what to do."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from ..errors import WorkbenchError

SQLITE_HEADER = b"SQLite format 3\0"
FULL_BELOW_BYTES = 1 << 20  # free space under which an I/O error is put down to a full disk
WORKSPACE_FOLDERS = ("models", "data")


def repair_hint(path: Path) -> str:
    return (f"run `workbench --home {path.parent} doctor --repair` to set it aside and rebuild the registry "
            f"from the model and data folders, or restore a backup ({path.name}.bak-*)")


def corrupt_error(path: Path, why: str) -> WorkbenchError:
    return WorkbenchError(f"the registry {path} is damaged ({why}); {repair_hint(path)}")


# The registry files this process holds open through SQLite, by (device, inode), with a count.
_open_in_process: dict[tuple[int, int], int] = {}


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def note_opened(path: Path) -> None:
    key = _file_key(path)
    if key is not None:
        _open_in_process[key] = _open_in_process.get(key, 0) + 1


def note_closed(path: Path) -> None:
    key = _file_key(path)
    if key is not None and key in _open_in_process:
        _open_in_process[key] -= 1
        if not _open_in_process[key]:
            del _open_in_process[key]


def check_file(path: Path) -> None:
    """Refuse what is not a registry before SQLite touches it (SQLite would take a 0-byte file, or a
    file it cannot parse, as a fresh empty database and re-initialise it).

    Not while this process has the file open through SQLite already (the app and a worker, a test and
    the app): closing any descriptor of a file drops all of the process's POSIX locks on it, so another
    process's SQLite would think itself the last user, delete the WAL under our open connection, and
    every later write of ours would be lost. SQLite itself avoids such closes; so must we."""
    if _file_key(path) in _open_in_process:
        return  # checked when it was first opened, and SQLite has parsed it since
    if path.is_dir():
        raise WorkbenchError(f"the registry {path} is a folder, not a database file; move it away and "
                             f"run `workbench --home {path.parent} doctor --repair`")
    if not path.exists():
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise WorkbenchError(f"cannot read the registry {path}: {error.strerror or error}") from None
    if not head:
        if workspace_has_folders(path.parent):
            raise WorkbenchError(f"the registry {path} is empty (0 bytes) but the workspace holds model or "
                                 f"dataset folders; {repair_hint(path)}")
        return
    if head != SQLITE_HEADER:
        raise corrupt_error(path, "not an SQLite database")


def workspace_has_folders(home: Path) -> bool:
    for name in WORKSPACE_FOLDERS:
        folder = home / name
        if folder.is_dir() and any(not p.name.startswith(".") and p.is_dir() for p in folder.iterdir()):
            return True
    return False


def disk_problem(home: Path) -> str | None:
    """"... is read-only" or "the disk holding ... is full", when that is so."""
    try:
        stats = os.statvfs(home)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return f"{home} is read-only"
    if stats.f_bavail * stats.f_frsize < FULL_BELOW_BYTES:
        return f"the disk holding {home} is full"
    return None


def connect(path: Path, timeout_s: float, immutable: bool = False) -> sqlite3.Connection:
    if immutable:  # nothing can write there, so SQLite may skip locks and the -shm file it cannot create
        uri = f"file:{path.as_posix()}?immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)
    return sqlite3.connect(str(path), timeout=timeout_s, check_same_thread=False)


def user_error(error: sqlite3.Error, path: Path) -> WorkbenchError:
    """One line for an SQLite failure: the file, what is wrong, what to do."""
    text = str(error)
    lowered = text.lower()
    code = getattr(error, "sqlite_errorname", "") or ""
    home = path.parent
    if "full" in lowered or code == "SQLITE_FULL":
        return WorkbenchError(f"the disk holding {home} is full; free some space and try again")
    if "readonly" in lowered or "read-only" in lowered or code.startswith("SQLITE_READONLY"):
        return WorkbenchError(f"{home} is read-only; list and show commands work, changes need a "
                              "writable workspace")
    if any(word in lowered for word in ("malformed", "not a database", "encrypted")) or \
            code in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return corrupt_error(path, text)
    if "locked" in lowered or "busy" in lowered:
        return WorkbenchError(f"the registry {path} stayed locked by another process; try again "
                              "(is a job or another workbench writing a lot?)")
    if "i/o error" in lowered or "unable to open" in lowered:
        problem = disk_problem(home)
        if problem:
            return WorkbenchError(f"{problem}; cannot write the registry {path}")
        return WorkbenchError(f"cannot use the registry {path} ({text}); check the disk and its permissions")
    return WorkbenchError(f"the registry {path}: {text}")


def backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the database with SQLite's online backup (consistent while others read and write) to
    workbench.db.bak-v<version> beside it, before a migration changes it."""
    target = path.with_name(f"{path.name}.bak-v{version}")
    if target.exists():
        target = path.with_name(f"{path.name}.bak-v{version}-{int(time.time())}")
    copy = sqlite3.connect(str(target))
    try:
        conn.backup(copy)
    finally:
        copy.close()
    return target
