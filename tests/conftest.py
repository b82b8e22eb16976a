"""Shared fixtures: real workspaces in temporary folders, real (tiny) models, the shared corpora."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """../shared/corpora (alice.txt, poe.txt); tests that need it are skipped where it is absent."""
    if not (CORPORA / "alice.txt").exists():
        pytest.skip("../shared/corpora is not available")
    return CORPORA


@pytest.fixture(scope="session")
def _template_workspace(tmp_path_factory) -> Path:
    """One initialised workspace (registry + tiny-neo) built once per run, copied per test."""
    from workbench.core.context import open_workspace

    home = tmp_path_factory.mktemp("template-ws")
    ctx = open_workspace(home)
    ctx.registry.close()
    return home


@pytest.fixture
def home(_template_workspace, tmp_path) -> Path:
    """A fresh, initialised workspace folder with the starter model `tiny-neo`."""
    target = tmp_path / "ws"
    shutil.copytree(_template_workspace, target)
    # Folder paths in the registry point at the template; re-point them at this copy.
    from workbench.core.registry import Registry

    registry = Registry(target / "workbench.db")
    for record in registry.list_models():
        registry.update_model(record.name, path=str(target / "models" / record.name))
    registry.close()
    return target


@pytest.fixture
def ctx(home):
    from workbench.core.context import open_workspace

    context = open_workspace(home)
    yield context
    context.registry.close()
