"""Token ids of dataset text: the workspace's GPT-2 tokenizer (built offline once when the starter model
is absent), chunked encoding that equals one-call encoding, a fingerprint per tokenizer, and the per-split
token cache files (written atomically, so concurrent DDP ranks never read half a file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from .context import Context
from .registry import DatasetRecord

TOKENS_FOLDER = "tokens"
GPT2_TOKENIZER_FOLDER = ".gpt2-tokenizer"  # under data/, used when the starter model is absent
TOKENIZE_CHUNK_CHARS = 8_000
TOKENIZE_BATCH_CHUNKS = 64  # chunks encoded per call: bounds the memory of the Encoding objects


def token_cache_path(record: DatasetRecord, split: str, tokenizer: Any) -> Path:
    return Path(record.path) / TOKENS_FOLDER / f"{split}.{tokenizer_fingerprint(tokenizer)}.npy"


def gpt2_tokenizer(ctx: Context):
    """The GPT-2 BPE tokenizer: the starter model's, else one kept under data/ (built offline once)."""
    from .models import STARTER_MODEL, load_tokenizer, staged_folder, write_gpt2_tokenizer_files

    starter = ctx.registry.find_model(STARTER_MODEL)
    if starter and (Path(starter.path) / "tokenizer.json").is_file():
        return load_tokenizer(starter.path)
    folder = ctx.ws.data_dir / GPT2_TOKENIZER_FOLDER
    if not folder.is_dir():
        with staged_folder(folder) as staging:
            write_gpt2_tokenizer_files(staging)
    return load_tokenizer(folder)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short name + hash that changes whenever the tokenizer's behaviour can change."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = backend.to_str()
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items())) + repr(type(tokenizer))
    digest = hashlib.sha256(definition.encode("utf-8")).hexdigest()[:16]
    return f"{type(tokenizer).__name__}-{digest}"


def tokenize_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens (see token_array)."""
    return token_array(tokenizer, text).tolist()


def token_array(tokenizer: Any, text: str):
    """Token ids of `text` without special tokens as a uint32 array, encoded chunk by chunk.

    Chunks are cut just before a newline that precedes a non-space character: a pre-token boundary for
    GPT-2's byte-level BPE, so the ids equal those of encoding the whole text in one call, while memory
    stays bounded and transformers' "longer than the maximum length" warning never applies."""
    import numpy as np

    chunks = chunk_at_line_starts(text, TOKENIZE_CHUNK_CHARS)
    arrays = [np.asarray(ids, dtype=np.uint32)
              for start in range(0, len(chunks), TOKENIZE_BATCH_CHUNKS)
              for ids in encode_many(tokenizer, chunks[start:start + TOKENIZE_BATCH_CHUNKS])]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint32)


def encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens and without max-length warnings."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast tokenizer: batched in Rust, no max-length bookkeeping
        return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    # The slow path warns about texts longer than the model's context; that is expected here.
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def chunk_at_line_starts(text: str, size: int) -> list[str]:
    """Pieces of about `size` characters, each cut just before a "\\n" followed by a non-space."""
    chunks, start = [], 0
    while len(text) - start > size:
        cut = _last_line_start_cut(text, start + 1, start + size)
        if cut is None:
            cut = _next_line_start_cut(text, start + size)
        if cut is None:
            break
        chunks.append(text[start:cut])
        start = cut
    chunks.append(text[start:])
    return [chunk for chunk in chunks if chunk]


_LINE_START = re.compile(r"\n(?=\S)")


def _last_line_start_cut(text: str, lo: int, hi: int) -> int | None:
    found = None
    for match in _LINE_START.finditer(text, lo, hi):
        found = match.start()
    return found


def _next_line_start_cut(text: str, pos: int) -> int | None:
    match = _LINE_START.search(text, pos)
    return match.start() if match else None


def save_array_atomically(path: Path, array) -> None:
    """np.save through a temporary file + rename: concurrent readers (DDP ranks) never see half a file."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as stream:
            np.save(stream, array)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
