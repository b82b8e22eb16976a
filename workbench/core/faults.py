"""Disk faults as one line: a full disk or a read-only workspace, whichever layer noticed it.

Writers fail in many voices: OSError(ENOSPC), sqlite3 "database or disk is full", safetensors
"os error 28", torch's "PytorchStreamWriter failed writing file" from inline_container.cc. Each becomes
"the disk holding WS is full" or "WS is read-only", and the previous state stays as it was (writers
stage their files and rename them into place)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import WorkbenchError

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FULL_WORDS = ("no space left", "os error 28", "storagefull", "disk is full", "database or disk is full",
              "disk quota exceeded")
WRITE_FAILED_WORDS = ("pytorchstreamwriter failed writing", "file write failed", "unexpected pos")
FULL_BELOW_BYTES = 1 << 20


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            stats = os.statvfs(folder)
        except OSError:
            continue
        return stats.f_bavail * stats.f_frsize
    return None


def disk_fault(error: BaseException, home: str | os.PathLike) -> WorkbenchError | None:
    """The one-line error for `error` when it (or what caused it) is a full or read-only disk."""
    home = Path(home)
    for link in _chain(error):
        text = str(link).lower()
        number = getattr(link, "errno", None)
        if number in FULL_ERRNOS or any(word in text for word in FULL_WORDS):
            return disk_full(home)
        if number == errno.EROFS or "read-only file system" in text or "os error 30" in text:
            return WorkbenchError(f"{home} is read-only; list and show commands work, changes need a "
                                  "writable workspace")
        if any(word in text for word in WRITE_FAILED_WORDS):
            free = _free_bytes(home)
            if free is not None and free < FULL_BELOW_BYTES:
                return disk_full(home)
    return None


def disk_full(home: Path) -> WorkbenchError:
    return WorkbenchError(f"the disk holding {home} is full; free some space and try again "
                          "(nothing was changed)")


def require_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Refuse up front when the disk holding `folder` has less than `needed_bytes` free."""
    free = _free_bytes(Path(folder))
    if free is not None and free < needed_bytes:
        raise WorkbenchError(f"not enough space for {what}: it needs about {needed_bytes / 1e6:,.0f} MB and "
                             f"the disk holding {folder} has {free / 1e6:,.1f} MB free")
