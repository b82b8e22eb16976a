"""Corpora and instruction sets: import, clean, split, tokenize.

A dataset is a folder data/<name>/ holding its train/val/test split (`.txt` for text, `.jsonl` for
instruction records) and a meta.json, plus one registry row (the source of truth). Folders are written
beside their target under a temporary name and renamed into place, so an error leaves nothing behind.

Text is split in three contiguous blocks (80/10/10 of the characters, each cut moved to the nearest
paragraph or line break); instruction records are shuffled with the recorded seed and split by count.
Token counts use the GPT-2 BPE; token ids of a split are cached beside it per tokenizer.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .context import Context
from .errors import WorkbenchError
from .instruction_formats import normalise_line_ends
from .registry import ACTIVE_JOB_STATUSES, DatasetRecord
from .staging import delete_folder

KINDS = ("text", "instructions")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
META_FILE = "meta.json"
TOKENS_FOLDER = "tokens"
GPT2_TOKENIZER_FOLDER = ".gpt2-tokenizer"  # under data/, used when the starter model is absent

# Known public-domain books: Project Gutenberg plain-text (UTF-8) files.
BOOKS = {
    "alice": ("Lewis Carroll, Alice's Adventures in Wonderland (Gutenberg #11)",
              "https://www.gutenberg.org/cache/epub/11/pg11.txt"),
    "poe": ("The Works of Edgar Allan Poe, Raven Edition, Vol. 1 (Gutenberg #2147)",
            "https://www.gutenberg.org/cache/epub/2147/pg2147.txt"),
    "gulliver": ("Jonathan Swift, Gulliver's Travels (Gutenberg #829)",
                 "https://www.gutenberg.org/cache/epub/829/pg829.txt"),
}
DOWNLOAD_TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
TOKENIZE_CHUNK_CHARS = 8_000
TOKENIZE_BATCH_CHUNKS = 64  # chunks encoded per call: bounds the memory of the Encoding objects

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
    _save_array_atomically(cache, ids)
    return ids.astype(np.int64)


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
            _save_array_atomically(folder / TOKENS_FOLDER / f"{split}.{fingerprint}.npy", token_ids[split])

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


def _save_array_atomically(path: Path, array) -> None:
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


# ---------------------------------------------------------------- decoding


_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: they share bytes
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
MAX_CONTROL_SHARE = 0.001


def decode_text(raw: bytes, source: str) -> tuple[str, str]:
    """Bytes to (text, encoding): a Unicode BOM wins, then strict UTF-8, then a detected encoding.

    Binary data (NUL bytes outside UTF-16/32, many control characters) is refused."""
    for bom, encoding in _UNICODE_BOMS:
        if raw.startswith(bom):
            return _checked_text(_decode_or_refuse(raw, encoding, source), source), encoding
    if b"\x00" in raw:
        raise WorkbenchError(f"{source} looks binary (it contains NUL bytes); give a text file")
    try:
        return _checked_text(raw.decode("utf-8"), source), "utf-8"
    except UnicodeDecodeError:
        pass
    text, encoding = _decode_detected(raw, source)
    return _checked_text(text, source), encoding


def _decode_or_refuse(raw: bytes, encoding: str, source: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise WorkbenchError(f"{source} starts with a {encoding} byte-order mark but is not valid "
                             f"{encoding} (byte {error.start})") from None


# Detection often takes Western European (Latin-1 / Windows-1252) text for a Central European code page
# that decodes the same bytes to other letters; cp1252 wins when its decoding is about as clean.
PREFERRED_LEGACY_ENCODING = "cp1252"
PREFERENCE_CHAOS_MARGIN = 0.15


def _decode_detected(raw: bytes, source: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None:
        raise WorkbenchError(f"{source} is neither UTF-8 nor text in an encoding that can be detected; "
                             "convert it to UTF-8")
    western = from_bytes(raw, cp_isolation=[PREFERRED_LEGACY_ENCODING]).best()
    if western is not None and western.chaos <= best.chaos + PREFERENCE_CHAOS_MARGIN:
        best = western
    return str(best), best.encoding


def _checked_text(text: str, source: str) -> str:
    controls = len(_CONTROL_CHARS.findall(text))
    if controls > max(2, MAX_CONTROL_SHARE * len(text)):
        raise WorkbenchError(f"{source} looks binary ({controls} control characters); give a text file")
    return text


# ---------------------------------------------------------------- cleaning and splitting text


_GUTENBERG_START = re.compile(
    r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END_LINE = re.compile(r"\n[ \t]*End of (?:the )?Project Gutenberg.*\s*$", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){3,}")




def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg licence header and footer (the `*** START/END OF ... ***` lines)."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = _GUTENBERG_END_LINE.sub("\n", text[:end.start()])
    return text


def clean_text(text: str) -> str:
    """Normalised line ends, no Gutenberg boilerplate, at most two blank lines in a row, trimmed ends."""
    text = strip_gutenberg(normalise_line_ends(text).lstrip("\ufeff"))
    text = _BLANK_RUN.sub("\n\n\n", text)
    return text.strip("\n").rstrip() + "\n"


def split_text(text: str) -> dict[str, str]:
    """Three contiguous blocks of about 80/10/10 % of the characters, cut at paragraph or line breaks."""
    length = len(text)
    window = max(1, length // 20)
    first = _cut_near(text, int(length * 0.8), window)
    second = _cut_near(text, int(length * 0.9), window)
    parts = dict(zip(SPLITS, (text[:first], text[first:second], text[second:])))
    parts = {split: part.strip("\n") + "\n" for split, part in parts.items()}
    empty = [split for split, part in parts.items() if not part.strip()]
    if empty or not 0 < first < second < length:
        raise WorkbenchError(f"the text is too short to split 80/10/10 ({length} characters)")
    return parts


def _cut_near(text: str, target: int, window: int) -> int:
    """A paragraph break nearest `target` within `window`, else a line break, else a space, else it."""
    lo, hi = max(1, target - window), min(len(text) - 1, target + window)
    for separator in ("\n\n", "\n", " "):
        found = _nearest(text, separator, target, lo, hi)
        if found is not None:
            return found + len(separator)
    return target


def _nearest(text: str, separator: str, target: int, lo: int, hi: int) -> int | None:
    after = text.find(separator, target, hi)
    before = text.rfind(separator, lo, target)
    candidates = [i for i in (before, after) if i >= 0]
    return min(candidates, key=lambda i: abs(i - target)) if candidates else None


# ---------------------------------------------------------------- instruction records


def parse_instructions(text: str, source: str) -> list[dict]:
    """Every record of an instruction file, normalised to {"messages": [...]} (see instruction_formats)."""
    from .instruction_formats import parse_records

    records = parse_records(text, source)
    if len(records) < len(SPLITS):
        raise WorkbenchError(f"{source} has {len(records)} instruction record(s); at least "
                             f"{len(SPLITS)} are needed for a train/val/test split")
    return records


def split_records(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Shuffle with `seed`, then 80/10/10 by count (at least one record in each split)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    count = len(order)
    n_val = max(1, round(count * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(count * SPLIT_FRACTIONS[2]))
    n_train = count - n_val - n_test
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, count)}
    return {split: [records[i] for i in order[a:b]] for split, (a, b) in bounds.items()}


# ---------------------------------------------------------------- downloading


def download(url: str, what: str) -> bytes:
    """The body at `url`; one clear line when offline, on an HTTP error or when it is too large."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "workbench (+data get)"})
    except ValueError as error:
        raise WorkbenchError(f"cannot download {what}: bad URL {url!r} ({error})") from None
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise WorkbenchError(f"cannot download {what} from {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise WorkbenchError(f"cannot download {what} from {url}: offline or unreachable "
                             f"({_reason(error.reason)})") from None
    except TimeoutError:
        raise WorkbenchError(f"cannot download {what} from {url}: offline (timed out after "
                             f"{DOWNLOAD_TIMEOUT_S} s)") from None
    except (OSError, http.client.HTTPException) as error:
        raise WorkbenchError(f"cannot download {what} from {url}: {_reason(error)}") from None
    except ValueError as error:
        raise WorkbenchError(f"cannot download {what}: bad URL {url!r} ({error})") from None
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise WorkbenchError(f"cannot download {what} from {url}: larger than "
                             f"{MAX_DOWNLOAD_BYTES // 2**20} MiB")
    return body


def _reason(reason: Any) -> str:
    text = getattr(reason, "strerror", None) or str(reason)
    return " ".join(str(text).split())
