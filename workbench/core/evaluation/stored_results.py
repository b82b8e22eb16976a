"""Stored evaluation results read back from the registry: the rows of a model (without the bulky
details), the latest value per (metric, target), and two models side by side with which one is better.
"""

from __future__ import annotations

from typing import Any


def list_evaluations(ctx, model: str | None = None) -> list[dict]:
    """Stored evaluation rows (newest last), without the bulky details."""
    return [{"id": e.id, "model": e.model, "metric": e.metric, "value": e.value, "target": e.target,
             "settings": e.settings, "model_sha256": e.model_sha256, "data_sha256": e.data_sha256,
             "created_at": e.created_at} for e in ctx.registry.evaluations(model=model)]


def latest_values(ctx, model: str) -> dict[tuple[str, str], Any]:
    """{(metric, target): latest EvaluationRecord} of a model."""
    latest = {}
    for record in ctx.registry.evaluations(model=model):
        latest[(record.metric, record.target or "")] = record
    return latest


def compare(ctx, a: str, b: str) -> list[dict]:
    """Stored results of two models side by side: one row per (metric, target) either has."""
    from .gates import regression

    ctx.registry.get_model(a)
    ctx.registry.get_model(b)
    left, right = latest_values(ctx, a), latest_values(ctx, b)
    rows = []
    for key in sorted(set(left) | set(right)):
        metric, target = key
        ra, rb = left.get(key), right.get(key)
        row = {"metric": metric, "target": target, "a": ra.value if ra else None, "b": rb.value if rb else None,
               "delta": None, "delta_pct": None, "better": None,
               "same_settings": bool(ra and rb and ra.settings == rb.settings)}
        if ra and rb:
            row["delta"] = rb.value - ra.value
            row["delta_pct"] = (rb.value - ra.value) / abs(ra.value) * 100 if ra.value else None
            worse = regression(metric, rb.value, ra.value)
            if worse is not None:
                row["better"] = a if worse > 0 else (b if worse < 0 else "equal")
        rows.append(row)
    return rows
