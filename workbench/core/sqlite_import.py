"""sqlite-utils without its optional pandas and numpy imports.

sqlite_utils.db imports pandas and numpy at import time only to map their scalar types to column types
(we store plain Python values). Importing pandas costs 1-2 s on a busy 2-core machine, which doubled the
app's time to first paint and slowed every CLI command. When neither is loaded yet, they are hidden for
the duration of that one import and stay importable afterwards."""

from __future__ import annotations

import sys

_OPTIONAL = ("pandas", "numpy")


def import_sqlite_utils():
    if "sqlite_utils" in sys.modules or any(name in sys.modules for name in _OPTIONAL):
        import sqlite_utils

        return sqlite_utils
    for name in _OPTIONAL:
        sys.modules[name] = None  # type: ignore[assignment] - makes `import name` raise ImportError
    try:
        import sqlite_utils
    finally:
        for name in _OPTIONAL:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return sqlite_utils
