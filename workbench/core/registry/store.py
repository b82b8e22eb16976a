"""The SQLite registry: typed records in, typed records out.

Registry is the repository API over workbench.db, assembled from one row class per group of tables:
catalog_rows.py (models, datasets), job_rows.py (jobs, metrics) and result_rows.py (evaluations,
sessions), all on database.py's RegistryDatabase, which opens the file (WAL mode, busy timeout, migrations
after a backup) and runs the short write transactions they share.
"""

from __future__ import annotations

from .catalog_rows import CatalogRows
from .job_rows import JobRows
from .result_rows import ResultRows


class Registry(CatalogRows, JobRows, ResultRows):
    """A small repository API over workbench.db. Safe to share between threads of one process."""
