"""Model names, the file names a model folder holds, and model shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import WorkbenchError

STARTER_MODEL = "tiny-neo"
ARCHITECTURES = ("gpt-neo", "gpt2")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # whole name: fullmatch (no "\n" after $)
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
PICKLE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")


@dataclass(frozen=True)
class ModelShape:
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    context: int = 256


STARTER_SHAPE = ModelShape()


def validate_name(name: str, what: str = "model") -> str:
    """Names become folder names: no path separators, no leading dots, no spaces."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise WorkbenchError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no path separators, at most 100 characters)"
        )
    return name


def one_line(error: BaseException) -> str:
    """The first line of an error's text: user errors are one line."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
