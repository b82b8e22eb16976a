"""The job runner's metric sink: rows to the registry and log.jsonl in short batched writes."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .job_files import METRIC_KEYS
from .registry import Registry


class MetricSink:
    """on_metrics for a job: buffers rows and flushes them to the registry (one short transaction,
    which also moves the job's step) and to log.jsonl, every `interval` seconds or `max_rows` rows,
    and at once at each multiple of `save_every` (the loop reports a step before checkpointing it),
    so every row up to the last complete checkpoint is stored even if the job is then killed."""

    def __init__(self, registry: Registry, job_id: int, log_path: Path | None, interval: float = 0.5,
                 max_rows: int = 256, save_every: int = 0, timeout_ms: int = 5_000):
        self.registry, self.job_id, self.log_path = registry, int(job_id), log_path
        self.timeout_ms = timeout_ms  # how long one flush waits on a busy registry before buffering
        self.interval, self.max_rows, self.save_every = interval, max_rows, save_every
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.step = 0

    def __call__(self, rows: list[dict]) -> None:
        checkpoint_next = False
        with self._lock:
            for row in rows:
                clean = {key: _plain(row.get(key)) for key in METRIC_KEYS if key in row}
                self._rows.append(clean)
                if clean.get("split", "train") == "train" and clean.get("step") is not None:
                    self.step = max(self.step, int(clean["step"]))
                    checkpoint_next |= bool(self.save_every) and self.step % self.save_every == 0
            due = (checkpoint_next or len(self._rows) >= self.max_rows
                   or time.monotonic() - self._last_flush >= self.interval)
        if due:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Store the buffered rows. A registry that stays locked (or busy past a short wait) keeps
        them buffered for the next flush instead of failing the job; the final flush waits longer."""
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._rows:
                return
            rows, step = list(self._rows), self.step
            attempts = 6 if final else 1
            for attempt in range(attempts):
                try:
                    self.registry.add_metrics(self.job_id, rows, job_step=step, timeout_ms=self.timeout_ms)
                    break
                except WorkbenchError as error:
                    if "locked" not in str(error) and "busy" not in str(error):
                        raise
                    if attempt == attempts - 1:
                        print(f"metrics: registry busy, {len(rows)} row(s) kept for the next flush",
                              file=sys.stderr, flush=True)
                        return
                    time.sleep(0.5 * (attempt + 1))
            self._rows = self._rows[len(rows):]
            if self.log_path is not None:  # after the registry took them: each row once in both
                with open(self.log_path, "a") as log:
                    for row in rows:
                        log.write(json.dumps({"time": round(time.time(), 3), **row}) + "\n")


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars become plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    return value
