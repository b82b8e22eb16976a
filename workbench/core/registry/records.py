"""The registry's records: dataclasses in and out, and their conversion to and from table rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, TypeVar

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE_JOB_STATUSES = ("queued", "running")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelRecord:
    name: str
    path: str
    arch: str
    params: int
    context_length: int
    source: str  # created | imported | fine-tuned
    parent: str | None = None
    job_id: int | None = None
    dataset: str | None = None
    created_at: str = field(default_factory=now_iso)
    sha256: str | None = None
    adapter: bool = False  # a PEFT adapter folder whose base is `parent`
    referenced: bool = False  # registered in place (not copied into models/)
    meta: dict = field(default_factory=dict)


@dataclass
class DatasetRecord:
    name: str
    kind: str  # text | instructions
    path: str
    chars: int
    tokens: int
    sha256: str
    splits: dict = field(default_factory=dict)  # {"train": n, "val": n, "test": n} (tokens or records)
    seed: int = 0
    source: str | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class JobRecord:
    id: int
    status: str
    base_model: str
    out_model: str
    dataset: str | None = None
    config: dict = field(default_factory=dict)
    pid: int | None = None
    host: str | None = None
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    ended_at: str | None = None
    step: int = 0
    total_steps: int = 0
    last_checkpoint: str | None = None
    error: str | None = None
    heartbeat_at: float | None = None  # unix time of the last beat (staleness seen from other hosts)
    heartbeat_mono: float | None = None  # time.monotonic() of the last beat: staleness on the same host
    device: str | None = None  # device the job holds (cpu, cuda:0, ...): the queue's slot key


@dataclass
class MetricRecord:
    id: int
    job_id: int
    step: int
    split: str  # train | val
    loss: float
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    created_at: float | None = None


@dataclass
class EvaluationRecord:
    id: int
    model: str
    metric: str
    value: float
    target: str | None = None  # dataset name, file or refs the metric was computed on
    settings: dict = field(default_factory=dict)
    model_sha256: str | None = None
    data_sha256: str | None = None
    cache_key: str | None = None
    created_at: str = field(default_factory=now_iso)
    details: dict = field(default_factory=dict)


@dataclass
class SessionRecord:
    id: str
    kind: str  # chat | dialogue
    models: list = field(default_factory=list)
    path: str = ""
    title: str = ""
    turns: int = 0
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


R = TypeVar("R")

# Columns stored as JSON text and the python types they decode to.
_JSON_COLUMNS = {"meta", "splits", "config", "settings", "details", "models"}
_BOOL_COLUMNS = {"adapter", "referenced"}


def to_row(record: Any) -> dict:
    row = asdict(record)
    for key in _JSON_COLUMNS & row.keys():
        row[key] = json.dumps(row[key])
    for key in _BOOL_COLUMNS & row.keys():
        row[key] = int(row[key])
    return row


def from_row(cls: type[R], row: dict) -> R:
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in row.items() if k in names}
    for key in _JSON_COLUMNS & values.keys():
        values[key] = json.loads(values[key]) if values[key] else ({} if key != "models" else [])
    for key in _BOOL_COLUMNS & values.keys():
        values[key] = bool(values[key])
    return cls(**values)


