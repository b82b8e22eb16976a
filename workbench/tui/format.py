"""Small text formatting helpers shared by the screens."""

from __future__ import annotations

from ..core.units import human_count  # noqa: F401 - re-exported for the screens


def when(iso: str | None) -> str:
    """'2025-01-02T03:04:05+00:00' -> '2025-01-02 03:04'."""
    return iso[:16].replace("T", " ") if iso else "-"


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
