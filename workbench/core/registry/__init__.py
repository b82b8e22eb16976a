"""The SQLite registry (workbench.db): records, schema migrations, opening and the Registry itself.

records.py    the dataclasses in and out        migrations.py  the ordered schema migrations
paths.py      paths stored relative to the home opening.py     refusing damaged files, one-line errors
store.py      Registry: the repository API
"""

from .migrations import MIGRATIONS, SCHEMA_VERSION
from .records import (ACTIVE_JOB_STATUSES, JOB_STATUSES, DatasetRecord, EvaluationRecord, JobRecord,
                      MetricRecord, ModelRecord, SessionRecord, now_iso)
from .store import BUSY_TIMEOUT_MS, Registry

__all__ = [
    "ACTIVE_JOB_STATUSES", "BUSY_TIMEOUT_MS", "JOB_STATUSES", "MIGRATIONS", "SCHEMA_VERSION", "DatasetRecord",
    "EvaluationRecord", "JobRecord", "MetricRecord", "ModelRecord", "Registry", "SessionRecord", "now_iso",
]
