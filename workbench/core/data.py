"""Datasets in the workspace: add (from a file or a downloaded book), remove, and read their splits.

A dataset is a folder data/<name>/ holding its train/val/test split (`.txt` for text, `.jsonl` for
instruction records) and a meta.json, plus one registry row (the source of truth). Folders are written
beside their target under a temporary name and renamed into place, so an error leaves nothing behind.

The steps live beside this module, one job each: data_sources.py turns bytes (a file, a download) into
text; data_cleaning.py cleans text and splits text and instruction records; data_tokens.py counts and
caches token ids per tokenizer. The names callers reach through this module (SPLITS, clean_text,
split_text, decode_text, gpt2_tokenizer, token_cache_path, ...) are imported here from those modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .context import Context
from .data_cleaning import SPLITS, clean_text, parse_instructions, split_records, split_text
from .data_sources import decode_text, download
from .data_tokens import (TOKENS_FOLDER, encode_many, gpt2_tokenizer, save_array_atomically, token_array,
                          token_cache_path, tokenizer_fingerprint)
from .errors import WorkbenchError
from .registry import ACTIVE_JOB_STATUSES, DatasetRecord
from .staging import delete_folder

KINDS = ("text", "instructions")
META_FILE = "meta.json"

# Known public-domain books: Project Gutenberg plain-text (UTF-8) files.
BOOKS = {
    "alice": ("Lewis Carroll, Alice's Adventures in Wonderland (Gutenberg #11)",
              "https://www.gutenberg.org/cache/epub/11/pg11.txt"),
    "poe": ("The Works of Edgar Allan Poe, Raven Edition, Vol. 1 (Gutenberg #2147)",
            "https://www.gutenberg.org/cache/epub/2147/pg2147.txt"),
    "gulliver": ("Jonathan Swift, Gulliver's Travels (Gutenberg #829)",
                 "https://www.gutenberg.org/cache/epub/829/pg829.txt"),
}

# ---------------------------------------------------------------- public API


def add_dataset(ctx: Context, name: str, file: str | os.PathLike, kind: str = "text",
                seed: int = 0) -> DatasetRecord:
    """Clean, split and register the text or instruction file `file` as dataset `name`."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise WorkbenchError(f"no such file: {path}")
    return _add_from_bytes(ctx, name, path.read_bytes(), kind, seed, source=str(path.resolve()))


def get_book(ctx: Context, key: str, url: str | None = None, name: str | None = None,
             seed: int = 0) -> DatasetRecord:
    """Download a known Project Gutenberg book (or `url`), clean it and register it as a text dataset."""
    if key not in BOOKS:
        raise WorkbenchError(f"unknown book '{key}': choose one of {', '.join(BOOKS)}")
    name = name or key
    _check_name_free(ctx, name)
    url = url or BOOKS[key][1]
    raw = download(url, what=key)
    return _add_from_bytes(ctx, name, raw, "text", seed, source=url)


def remove_dataset(ctx: Context, name: str) -> None:
    """Unregister a dataset and delete its folder (refused while an active job trains on it)."""
    record = ctx.registry.get_dataset(name)
    busy = [job.id for job in ctx.registry.list_jobs(ACTIVE_JOB_STATUSES) if job.dataset == name]
    if busy:
        raise WorkbenchError(f"dataset '{name}' is used by active job(s) {busy}; cancel them first")
    ctx.registry.remove_dataset(name)
    if not Path(record.path).resolve().is_relative_to(ctx.ws.home.resolve()):
        return  # a copied workspace's old row naming the original's folder: never delete outside --home
    try:
        delete_folder(record.path, ctx.ws.home, "the dataset folder")
    except WorkbenchError as error:
        raise WorkbenchError(f"removed dataset '{name}' from the registry, but {error}") from None


def dataset_record(ctx: Context, name_or_record: str | DatasetRecord) -> DatasetRecord:
    if isinstance(name_or_record, DatasetRecord):
        return name_or_record
    return ctx.registry.get_dataset(name_or_record)


def dataset_meta(record: DatasetRecord) -> dict:
    """The dataset's meta.json: its registry row as written, plus the encoding the source was read in."""
    path = Path(record.path) / META_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def split_path(ctx: Context, record: str | DatasetRecord, split: str) -> Path:
    record = dataset_record(ctx, record)
    if split not in SPLITS:
        raise WorkbenchError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    suffix = ".txt" if record.kind == "text" else ".jsonl"
    path = Path(record.path) / f"{split}{suffix}"
    if not path.is_file():
        raise WorkbenchError(f"dataset '{record.name}' is missing {path}; remove it and add it again")
    return path


def read_split_text(ctx: Context, name_or_record: str | DatasetRecord, split: str) -> str:
    record = _expect_kind(ctx, name_or_record, "text")
    return split_path(ctx, record, split).read_text(encoding="utf-8")


def read_instructions(ctx: Context, name_or_record: str | DatasetRecord, split: str) -> list[dict]:
    """Records of an instruction split, each {"messages": [{"role", "content"}, ...]} (datasets added
    before the messages format, stored as instruction/response, are normalised as they are read)."""
    from .instruction_formats import to_messages

    record = _expect_kind(ctx, name_or_record, "instructions")
    # split("\n"), not splitlines(): records may hold U+2028 and kin, which JSON leaves unescaped.
    lines = split_path(ctx, record, split).read_text(encoding="utf-8").split("\n")
    return [to_messages(json.loads(line), f"{record.name}/{split}") for line in lines if line.strip()]


def split_token_ids(ctx: Context, name_or_record: str | DatasetRecord, split: str,
                    tokenizer: Any = None) -> list[int]:
    """Token ids of a text split (no special tokens added), cached beside the split per tokenizer.

    `tokenizer` defaults to the workspace's GPT-2 tokenizer."""
    return split_token_array(ctx, name_or_record, split, tokenizer).tolist()


def split_token_array(ctx: Context, name_or_record: str | DatasetRecord, split: str,
                      tokenizer: Any = None):
    """As split_token_ids, as a numpy int64 array (cheaper for block sampling)."""
    import numpy as np

    record = _expect_kind(ctx, name_or_record, "text")
    tokenizer = tokenizer if tokenizer is not None else gpt2_tokenizer(ctx)
    cache = token_cache_path(record, split, tokenizer)
    if cache.is_file():
        return np.load(cache).astype(np.int64)
    ids = token_array(tokenizer, read_split_text(ctx, record, split))
    save_array_atomically(cache, ids)
    return ids.astype(np.int64)


# ---------------------------------------------------------------- adding


@dataclass
class PreparedDataset:
    """Cleaned, split and counted data, ready to be written into a (staging) folder."""

    fields: dict  # chars, tokens, sha256, splits of the DatasetRecord
    write: Callable[[Path], None]


def _add_from_bytes(ctx: Context, name: str, raw: bytes, kind: str, seed: int, source: str) -> DatasetRecord:
    from .models import staged_folder

    if kind not in KINDS:
        raise WorkbenchError(f"unknown dataset kind '{kind}': choose one of {', '.join(KINDS)}")
    _check_name_free(ctx, name)
    text, encoding = decode_text(raw, source)
    if kind == "text":
        prepared = _prepare_text(ctx, text, source)
    else:
        prepared = _prepare_instructions(ctx, text, seed, source)
    target = ctx.ws.dataset_dir(name)
    record = DatasetRecord(name=name, kind=kind, path=str(target), seed=seed, source=source,
                           **prepared.fields)
    with staged_folder(target) as staging:
        prepared.write(staging)
        meta = {**asdict(record), "encoding": encoding}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    try:
        return ctx.registry.add_dataset(record)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _check_name_free(ctx: Context, name: str) -> None:
    from .models import validate_name

    validate_name(name, "dataset")
    if ctx.registry.find_dataset(name):
        raise WorkbenchError(f"a dataset named '{name}' is already registered")
    if ctx.ws.dataset_dir(name).exists():
        raise WorkbenchError(f"{ctx.ws.dataset_dir(name)} already exists; remove it or pick another name")


def _expect_kind(ctx: Context, name_or_record: str | DatasetRecord, kind: str) -> DatasetRecord:
    record = dataset_record(ctx, name_or_record)
    if record.kind != kind:
        raise WorkbenchError(f"dataset '{record.name}' holds {record.kind}, not {kind}")
    return record


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prepare_text(ctx: Context, text: str, source: str) -> PreparedDataset:
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise WorkbenchError(f"{source} holds no text after cleaning")
    parts = split_text(cleaned)
    tokenizer = gpt2_tokenizer(ctx)
    token_ids = {split: token_array(tokenizer, part) for split, part in parts.items()}
    fields = {"chars": len(cleaned), "tokens": sum(len(ids) for ids in token_ids.values()),
              "sha256": _sha256(cleaned), "splits": {split: len(ids) for split, ids in token_ids.items()}}

    def write(folder: Path) -> None:
        fingerprint = tokenizer_fingerprint(tokenizer)
        for split, part in parts.items():
            (folder / f"{split}.txt").write_text(part, encoding="utf-8")
            save_array_atomically(folder / TOKENS_FOLDER / f"{split}.{fingerprint}.npy", token_ids[split])

    return PreparedDataset(fields, write)


def _prepare_instructions(ctx: Context, text: str, seed: int, source: str) -> PreparedDataset:
    records = parse_instructions(text, source)
    parts = split_records(records, seed)
    tokenizer = gpt2_tokenizer(ctx)
    texts = [m["content"] for r in records for m in r["messages"]]
    encodings = encode_many(tokenizer, texts)
    canonical = "".join(_jsonl_line(r) for r in records)
    fields = {"chars": sum(len(t) for t in texts), "tokens": sum(len(ids) for ids in encodings),
              "sha256": _sha256(canonical), "splits": {split: len(rs) for split, rs in parts.items()}}

    def write(folder: Path) -> None:
        for split, split_records_ in parts.items():
            (folder / f"{split}.jsonl").write_text("".join(_jsonl_line(r) for r in split_records_),
                                                   encoding="utf-8")

    return PreparedDataset(fields, write)


def _jsonl_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"
