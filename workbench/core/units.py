"""Human-readable numbers, shared by the CLI and the app."""

from __future__ import annotations


def human_count(n: int | None) -> str:
    """12_345_678 -> '12.3M' (parameters, tokens)."""
    if n is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """123_456_789 -> '123.5 MB'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def removed_job_text(removed) -> str:
    """One line for a deleted job (core.job_removal.RemovedJob): the CLI and the app say the same."""
    text = f"deleted job {removed.id} ({removed.status}, {removed.out_model}): {human_bytes(removed.freed_bytes)} freed"
    if removed.kept_models:
        text += f"; kept its model(s) {', '.join(removed.kept_models)}"
    return text
