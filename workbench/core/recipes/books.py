"""The books a recipe needs, found without copying them into the package.

The project guide keeps the corpora out of the repository, so a recipe finds a book (e.g. `alice`) as:
1. a dataset of that name already registered in the workspace;
2. `<name>.txt` in the corpora folder ($WORKBENCH_CORPORA, else `shared/corpora` beside the checkout),
   registered through the ordinary `data add` path (cleaned, split, tokenized);
3. otherwise a one-line error that says to run `workbench data get <name>` (which downloads it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WorkbenchError

ENV_CORPORA = "WORKBENCH_CORPORA"


def corpora_folder() -> Path | None:
    """$WORKBENCH_CORPORA, else shared/corpora next to the checkout when it exists."""
    if os.environ.get(ENV_CORPORA):
        return Path(os.environ[ENV_CORPORA]).expanduser()
    import workbench

    beside = Path(workbench.__file__).resolve().parents[2] / "shared" / "corpora"
    return beside if beside.is_dir() else None


def ensure_book(ctx, name: str):
    """The registered text dataset `name`, registering it from the corpora folder when missing.
    Returns (DatasetRecord, how) with how = "registered" | "added from PATH"."""
    from ..data import add_dataset

    record = ctx.registry.find_dataset(name)
    if record is not None:
        if record.kind != "text":
            raise WorkbenchError(f"dataset '{name}' holds {record.kind}; this recipe needs the book as text")
        return record, "registered"
    folder = corpora_folder()
    file = folder / f"{name}.txt" if folder else None
    if file is None or not file.is_file():
        where = f" and no {file}" if file else ""
        raise WorkbenchError(f"the book '{name}' is not registered{where}: run `workbench data get {name}` "
                             f"(downloads it) or set ${ENV_CORPORA} to a folder holding {name}.txt")
    return add_dataset(ctx, name, file), f"added from {file}"
