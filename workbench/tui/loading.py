"""Loading a model for Chat, Dialogue and Evaluate with its progress said step by step (the first load
also starts PyTorch, which alone takes seconds). Runs in a worker thread; `say` posts the text up."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _size(path: str) -> str:
    from pathlib import Path

    from ..core.units import human_count

    folder = Path(path)
    total = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if folder.is_dir() else 0
    return f" ({human_count(total)}B)" if total else ""


def load_model(cache, registry, name: str, say: Callable[[str], None]):
    """cache.get(registry, name), announcing: starting PyTorch (1/3), reading weights (2/3), ready (3/3)."""
    start = time.monotonic()
    if "torch" not in sys.modules:
        say(f"loading {name} 1/3: starting PyTorch (first model only)...")
        import torch  # noqa: F401 - imported here so the step is seen
        import transformers  # noqa: F401
    record = registry.get_model(name)
    say(f"loading {name} 2/3: reading the weights{_size(record.path)}...")
    loaded = cache.get(registry, name)
    say(f"loading {name} 3/3: ready in {time.monotonic() - start:.1f} s")
    return loaded
