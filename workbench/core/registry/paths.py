"""Paths in the registry are stored relative to the workspace, so a copied or moved workspace works as
the original did. A path outside the workspace (a model registered in place with --reference) stays
absolute; records always carry absolute paths."""

from __future__ import annotations

import os
from pathlib import Path

# (table, column, the workspace folder its paths live under)
PATH_COLUMNS = (("models", "path", "models"), ("datasets", "path", "data"), ("sessions", "path", "sessions"),
                ("jobs", "last_checkpoint", "jobs"))


def to_stored(home: Path, path: str | os.PathLike | None) -> str | None:
    """The form kept in the database: relative when inside `home`."""
    if path is None or str(path) == "":
        return path
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(home))
    except ValueError:
        return str(absolute)


def from_stored(home: Path, stored: str | None) -> str | None:
    if not stored:
        return stored
    path = Path(stored)
    return str(path if path.is_absolute() else home / path)


def inside(home: Path, path: str | os.PathLike) -> bool:
    """Whether `path` (resolved, symlinks followed) lies inside the workspace `home`."""
    try:
        Path(path).resolve().relative_to(home.resolve())
        return True
    except ValueError:
        return False
