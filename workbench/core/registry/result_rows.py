"""The registry's result tables: evaluation scores (one row per metric, with settings, hashes and cache
key) and saved chat and dialogue sessions.
"""

from __future__ import annotations

import json

from ..errors import WorkbenchError
from .database import RegistryDatabase
from .records import EvaluationRecord, SessionRecord, now_iso


class ResultRows(RegistryDatabase):
    """Rows of the evaluations and sessions tables."""

    # ------------------------------------------------------------ evaluations

    def add_evaluation(self, model: str, metric: str, value: float, target: str | None = None,
                       settings: dict | None = None, model_sha256: str | None = None,
                       data_sha256: str | None = None, cache_key: str | None = None,
                       details: dict | None = None) -> EvaluationRecord:
        row = {
            "model": model, "metric": metric, "value": float(value), "target": target,
            "settings": json.dumps(settings or {}), "model_sha256": model_sha256,
            "data_sha256": data_sha256, "cache_key": cache_key, "created_at": now_iso(),
            "details": json.dumps(details or {}),
        }
        with self.transaction() as db:
            eval_id = db["evaluations"].insert(row).last_pk
        return self._select(EvaluationRecord, "evaluations", "id = ?", [eval_id])[0]

    def evaluations(self, model: str | None = None, cache_key: str | None = None,
                    metric: str | None = None) -> list[EvaluationRecord]:
        clauses, args = [], []
        for column, value in (("model", model), ("cache_key", cache_key), ("metric", metric)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        return self._select(EvaluationRecord, "evaluations", " AND ".join(clauses) or None, args,
                            order_by="id")

    # ------------------------------------------------------------ sessions

    def save_session(self, record: SessionRecord) -> SessionRecord:
        record.updated_at = now_iso()
        with self.transaction() as db:
            db["sessions"].upsert(self._row(record), pk="id")
        return record

    def get_session(self, session_id: str) -> SessionRecord:
        rows = self._select(SessionRecord, "sessions", "id = ?", [session_id])
        if not rows:
            raise WorkbenchError(f"unknown session '{session_id}' (see `workbench sessions list`)")
        return rows[0]

    def list_sessions(self) -> list[SessionRecord]:
        return self._select(SessionRecord, "sessions", order_by="created_at, id")
