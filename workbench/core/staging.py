"""Folders written whole or not at all, and deleted honestly.

A folder is written under a staging name unique to this process beside its target, then renamed into
place: a crash leaves nothing or a complete folder, and two processes adding the same name at once
never share a staging folder. The rename decides the race: exactly one lands, the others hear that
the name already exists. Whatever fails in between, the staging folder is removed.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from .errors import WorkbenchError

STAGING_MARK = ".partial-"


class staged_folder:
    def __init__(self, target: Path):
        self.target = Path(target)
        self.staging = self.target.with_name(f".{self.target.name}{STAGING_MARK}{os.getpid()}-"
                                             f"{secrets.token_hex(3)}")

    def __enter__(self) -> Path:
        if self.target.exists():
            raise WorkbenchError(f"{self.target} already exists; remove it or pick another name")
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)  # our own half-written staging folder
            return
        try:
            if self.target.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(self.target))
            os.rename(self.staging, self.target)  # atomic; refuses a non-empty target
        except OSError as error:
            shutil.rmtree(self.staging, ignore_errors=True)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise WorkbenchError(f"'{self.target.name}' already exists ({self.target}); another "
                                     "process added it first") from None
            raise


def staging_pid(name: str) -> int | None:
    """The pid in a staging folder's name (.NAME.partial-PID-XXXXXX), else None."""
    if STAGING_MARK not in name:
        return None
    try:
        return int(name.rsplit(STAGING_MARK, 1)[1].split("-")[0])
    except ValueError:
        return None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_folder(path: str | os.PathLike, home: str | os.PathLike, what: str) -> None:
    """Delete a folder of the workspace, saying so when that fails. Never anything outside `home`:
    a copied workspace whose registry still names the original's folders must not delete them."""
    path, home = Path(path), Path(home)
    try:
        inside = path.resolve().is_relative_to(home.resolve()) and path.resolve() != home.resolve()
    except OSError:
        inside = False
    if not inside:
        raise WorkbenchError(f"{what} {path} is outside the workspace {home}; not deleting it")
    if not path.exists():
        return
    # Renamed aside first, so a partial failure never leaves a half-deleted folder under the real name.
    doomed = path.with_name(f".{path.name}.deleting-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        os.rename(path, doomed)
        shutil.rmtree(doomed)
    except OSError as error:
        left = doomed if doomed.exists() else path
        raise WorkbenchError(f"could not delete {what} {left}: {error.strerror or error}; delete it by "
                             "hand") from None
