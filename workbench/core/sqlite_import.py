"""sqlite-utils without its optional pandas and numpy imports.

sqlite_utils.db imports pandas and numpy at import time only to map their scalar types to column types
(we store plain Python values). Importing pandas costs 1-2 s on a busy 2-core machine, which doubled the
app's time to first paint and slowed every CLI command. Those not loaded yet are hidden for the
duration of that one import and stay importable afterwards."""

from __future__ import annotations

import sys

_OPTIONAL = ("pandas", "numpy")


def import_sqlite_utils():
    # Each one not loaded yet is hidden: torch loads numpy, and pandas must not come in behind it.
    hidden = [name for name in _OPTIONAL if name not in sys.modules]
    if "sqlite_utils" in sys.modules or not hidden:
        import sqlite_utils

        return sqlite_utils
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] - makes `import name` raise ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return sqlite_utils
