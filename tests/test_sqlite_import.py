"""Opening the registry never drags pandas in (1-2 s on 2 cores), even after torch has loaded numpy,
and pandas stays importable for whoever wants it later."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

CHECK = """
import sys
import numpy  # what importing torch does first
from workbench.core.registry import Registry
print("pandas" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed here")
def test_the_registry_does_not_import_pandas_behind_numpy():
    out = subprocess.run([sys.executable, "-c", CHECK + "import pandas\nprint(pandas.__name__)"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "pandas"]
