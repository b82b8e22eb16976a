"""Small text formatting helpers shared by the screens: one way to write numbers, times and errors."""

from __future__ import annotations

from ..core.errors import WorkbenchError
from ..core.units import human_count  # noqa: F401 - re-exported for the screens


def when(iso: str | None) -> str:
    """'2025-01-02T03:04:05+00:00' -> '2025-01-02 03:04'."""
    return iso[:16].replace("T", " ") if iso else "-"


def number(value: float | None, digits: int = 4) -> str:
    """Every figure in the app: 4 significant digits, thousands separators for big values, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def one_line(error: BaseException) -> str:
    """The message a user sees: a WorkbenchError's own line, else the type and first line."""
    if isinstance(error, WorkbenchError):
        return str(error)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
