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
