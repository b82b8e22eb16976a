"""The SQLite registry (workbench.db): records, schema migrations, opening and the Registry itself.

records.py    the dataclasses in and out        migrations.py  the ordered schema migrations
paths.py      paths stored relative to the home opening.py     refusing damaged files, one-line errors
database.py   opening, migrations, transactions  store.py       Registry: the repository API, made of
catalog_rows.py  models and datasets            job_rows.py    jobs and their metrics
result_rows.py   evaluations and sessions
"""

from .database import BUSY_TIMEOUT_MS
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .records import (ACTIVE_JOB_STATUSES, JOB_STATUSES, DatasetRecord, EvaluationRecord, JobRecord,
                      MetricRecord, ModelRecord, SessionRecord, now_iso)
from .store import Registry

__all__ = [
    "ACTIVE_JOB_STATUSES", "BUSY_TIMEOUT_MS", "JOB_STATUSES", "MIGRATIONS", "SCHEMA_VERSION", "DatasetRecord",
    "EvaluationRecord", "JobRecord", "MetricRecord", "ModelRecord", "Registry", "SessionRecord", "now_iso",
]
