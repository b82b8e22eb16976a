"""core/data.py: decoding, cleaning, splitting, tokenizing, instruction records, registry rows, downloads."""

from __future__ import annotations

import codecs
import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from workbench.core import data, data_tokens
from workbench.core.errors import WorkbenchError

GUTENBERG_HEADER = (
    "\ufeffThe Project Gutenberg eBook of A Small Book\r\n\r\nThis eBook is for the use of anyone anywhere.\r\n"
    "\r\n*** START OF THE PROJECT GUTENBERG EBOOK A SMALL BOOK ***\r\n\r\n\r\n"
)
GUTENBERG_FOOTER = (
    "\r\n\r\nEnd of the Project Gutenberg EBook of A Small Book\r\n\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK A SMALL BOOK ***\r\n\r\nUpdated editions will replace the previous one.\r\n"
)


def paragraphs(count: int, words: int = 12) -> str:
    """`count` distinct paragraphs separated by blank lines, LF line ends."""
    return "\n\n".join(
        " ".join(f"word{p}_{w}" for w in range(words)) + f"\nsecond line of paragraph {p}."
        for p in range(count)
    ) + "\n"


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def assert_nothing_left(ctx, name: str) -> None:
    assert ctx.registry.find_dataset(name) is None
    leftovers = [p.name for p in ctx.ws.data_dir.iterdir() if name in p.name]
    assert leftovers == []


# ---------------------------------------------------------------- decoding


def test_utf8_bom_and_crlf_give_the_same_dataset_as_plain_utf8(ctx, tmp_path):
    text = paragraphs(40)
    plain = data.add_dataset(ctx, "plain", write(tmp_path, "plain.txt", text))
    crlf = data.add_dataset(ctx, "crlf", write(tmp_path, "crlf.txt", codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode()))
    assert crlf.sha256 == plain.sha256
    assert crlf.chars == plain.chars == len(text)
    assert crlf.splits == plain.splits
    for split in data.SPLITS:
        content = data.read_split_text(ctx, crlf, split)
        assert "\r" not in content and "\ufeff" not in content


def test_utf16_with_bom_is_read(ctx, tmp_path):
    text = paragraphs(30)
    record = data.add_dataset(ctx, "wide", write(tmp_path, "wide.txt", text.encode("utf-16")))
    assert record.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert data.dataset_meta(record)["encoding"] == "utf-16"


def test_latin1_text_is_detected_and_decoded(ctx, tmp_path):
    line = "Le café était plein; une fête naïve à l'hôtel, où l'on mangeait des crêpes.\n"
    text = "\n".join(line * 3 for _ in range(30))
    record = data.add_dataset(ctx, "latin", write(tmp_path, "latin.txt", text.encode("latin-1")))
    joined = "".join(data.read_split_text(ctx, record, s) for s in data.SPLITS)
    assert "café était" in joined and "fête naïve à l'hôtel" in joined
    assert data.dataset_meta(record)["encoding"] == "cp1252"


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,  # NUL bytes
    bytes(range(1, 32)) * 200,  # control characters, no NUL
])
def test_binary_files_are_refused_and_leave_nothing(ctx, tmp_path, content):
    with pytest.raises(WorkbenchError, match="looks binary"):
        data.add_dataset(ctx, "blob", write(tmp_path, "blob.bin", content))
    assert_nothing_left(ctx, "blob")


def test_undetectable_bytes_are_refused(tmp_path):
    # Byte values that no single-byte code page makes readable text of and that are not UTF-8.
    raw = bytes([0x80, 0x81, 0x8D, 0x8F, 0x90, 0x9D, 0xFF, 0xFE]) * 300
    with pytest.raises(WorkbenchError, match="convert it to UTF-8|looks binary"):
        data.decode_text(raw, "noise.txt")


def test_empty_text_after_cleaning_is_refused(ctx, tmp_path):
    with pytest.raises(WorkbenchError, match="no text after cleaning"):
        data.add_dataset(ctx, "empty", write(tmp_path, "empty.txt", GUTENBERG_HEADER + "\r\n \r\n" + GUTENBERG_FOOTER))
    assert_nothing_left(ctx, "empty")


def test_missing_file_and_bad_names_are_refused(ctx, tmp_path):
    with pytest.raises(WorkbenchError, match="no such file"):
        data.add_dataset(ctx, "x", tmp_path / "absent.txt")
    with pytest.raises(WorkbenchError, match="invalid dataset name"):
        data.add_dataset(ctx, "../escape", write(tmp_path, "ok.txt", paragraphs(30)))
    with pytest.raises(WorkbenchError, match="unknown dataset kind"):
        data.add_dataset(ctx, "x", write(tmp_path, "ok.txt", paragraphs(30)), kind="poems")


# ---------------------------------------------------------------- cleaning


def test_gutenberg_header_and_footer_are_stripped(ctx, tmp_path):
    body = paragraphs(30)
    record = data.add_dataset(ctx, "book", write(tmp_path, "book.txt", GUTENBERG_HEADER + body.replace("\n", "\r\n") + GUTENBERG_FOOTER))
    joined = "".join(data.read_split_text(ctx, record, s) for s in data.SPLITS)
    assert "Gutenberg" not in joined and "Updated editions" not in joined
    assert joined.startswith("word0_0 ") and joined.rstrip().endswith("paragraph 29.")
    assert record.sha256 == hashlib.sha256(body.encode()).hexdigest()


def test_gutenberg_stripping_accepts_the_older_this_form():
    text = "licence\n*** START OF THIS PROJECT GUTENBERG EBOOK POEMS ***\nThe poem.\n*** END OF THIS PROJECT GUTENBERG EBOOK POEMS ***\nmore licence"
    assert data.clean_text(text) == "The poem.\n"


def test_cleaning_collapses_long_blank_runs_and_keeps_short_ones():
    text = "a\r\n\r\nb\r\n\r\n\r\nc\r\n\r\n  \r\n\t\r\n\r\n\r\n\r\nd\re\n"
    assert data.clean_text(text) == "a\n\nb\n\n\nc\n\n\nd\ne\n"


# ---------------------------------------------------------------- splitting


def test_text_split_is_contiguous_80_10_10_at_paragraph_breaks():
    text = data.clean_text(paragraphs(200))
    parts = data.split_text(text)
    assert parts == data.split_text(text)  # deterministic
    sizes = {s: len(p) for s, p in parts.items()}
    assert 0.75 < sizes["train"] / len(text) < 0.85
    assert 0.05 < sizes["val"] / len(text) < 0.15
    assert 0.05 < sizes["test"] / len(text) < 0.15
    for part in parts.values():
        assert part.startswith("word") and part.endswith(".\n")  # whole paragraphs
    assert "\n\n".join(p.rstrip("\n") for p in parts.values()) + "\n" == text


def test_a_text_without_line_breaks_is_still_split():
    text = " ".join(f"w{i}" for i in range(2000)) + "\n"
    parts = data.split_text(text)
    assert all(p.strip() for p in parts.values())
    assert " ".join(p.strip() for p in parts.values()) == text.strip()


def test_too_short_a_text_is_refused(ctx, tmp_path):
    with pytest.raises(WorkbenchError, match="too short to split"):
        data.add_dataset(ctx, "tiny", write(tmp_path, "tiny.txt", "one line\n"))
    assert_nothing_left(ctx, "tiny")


def test_same_file_gives_identical_splits_and_row(ctx, tmp_path):
    path = write(tmp_path, "same.txt", paragraphs(60))
    first = data.add_dataset(ctx, "first", path)
    second = data.add_dataset(ctx, "second", path)
    assert (first.sha256, first.splits, first.tokens) == (second.sha256, second.splits, second.tokens)
    for split in data.SPLITS:
        assert data.read_split_text(ctx, first, split) == data.read_split_text(ctx, second, split)


# ---------------------------------------------------------------- tokens


def test_chunked_tokenization_equals_one_call(ctx):
    tokenizer = data.gpt2_tokenizer(ctx)
    tricky = "".join(f"Line {i}:  spaced\t\n\n\n{'  ' * (i % 3)}indent {i}\n \nx'{i}\n" for i in range(400))
    chunks = data_tokens.chunk_at_line_starts(tricky, 500)
    assert len(chunks) > 10 and "".join(chunks) == tricky
    assert data_tokens.tokenize_text(tokenizer, tricky) == tokenizer(tricky, add_special_tokens=False)["input_ids"]


def test_registry_row_counts_gpt2_tokens_and_caches_split_ids(ctx, tmp_path):
    record = data.add_dataset(ctx, "counted", write(tmp_path, "c.txt", paragraphs(80)), seed=7)
    row = ctx.registry.get_dataset("counted")
    assert row == record
    assert (row.kind, row.seed, row.path) == ("text", 7, str(ctx.ws.dataset_dir("counted")))
    assert row.source == str((tmp_path / "c.txt").resolve())
    tokenizer = data.gpt2_tokenizer(ctx)
    for split in data.SPLITS:
        ids = data.split_token_ids(ctx, "counted", split)
        assert ids == tokenizer(data.read_split_text(ctx, row, split), add_special_tokens=False)["input_ids"]
        assert row.splits[split] == len(ids)
        assert data.token_cache_path(row, split, tokenizer).is_file()  # written when the dataset was added
    assert row.tokens == sum(row.splits.values())
    assert row.chars == len(data.clean_text(paragraphs(80)))


def test_split_token_ids_reuses_its_cache(ctx, tmp_path):
    import numpy as np

    record = data.add_dataset(ctx, "cached", write(tmp_path, "c.txt", paragraphs(40)))
    tokenizer = data.gpt2_tokenizer(ctx)
    cache = data.token_cache_path(record, "val", tokenizer)
    cache.unlink()
    fresh = data.split_token_ids(ctx, record, "val", tokenizer)
    assert cache.is_file() and np.load(cache).tolist() == fresh
    np.save(cache, np.array([1, 2, 3], dtype=np.uint32))  # proves the cache, not the text, is read
    assert data.split_token_ids(ctx, record, "val", tokenizer) == [1, 2, 3]


def test_a_different_tokenizer_gets_its_own_cache(ctx, tmp_path):
    import copy

    record = data.add_dataset(ctx, "two", write(tmp_path, "t.txt", paragraphs(40)))
    gpt2 = data.gpt2_tokenizer(ctx)
    other = copy.deepcopy(gpt2)
    other.add_tokens(["word1_1"])
    assert data.tokenizer_fingerprint(other) != data.tokenizer_fingerprint(gpt2)
    ids = data.split_token_ids(ctx, record, "train", other)
    assert len(ids) < record.splits["train"]
    assert data.token_cache_path(record, "train", other).is_file()


# ---------------------------------------------------------------- instructions


def instruction_lines(count: int, alpaca: bool = False) -> str:
    rows = []
    for i in range(count):
        if alpaca:
            rows.append({"instruction": f"Add {i} and 1.", "input": "" if i % 2 else f"context {i}", "output": f"{i + 1}"})
        else:
            rows.append({"instruction": f"Say {i}.", "response": f"{i}"})
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def test_instruction_records_split_by_seed(ctx, tmp_path):
    path = write(tmp_path, "ins.jsonl", instruction_lines(20))
    record = data.add_dataset(ctx, "ins", path, kind="instructions", seed=3)
    assert record.splits == {"train": 16, "val": 2, "test": 2}
    splits = {s: data.read_instructions(ctx, "ins", s) for s in data.SPLITS}
    everything = [r["messages"] for s in data.SPLITS for r in splits[s]]
    assert sorted(m[0]["content"] for m in everything) == sorted(f"Say {i}." for i in range(20))
    assert all([x["role"] for x in m] == ["user", "assistant"] for m in everything)
    assert [m[0]["content"] for m in everything] != [f"Say {i}." for i in range(20)]  # shuffled
    again = data.add_dataset(ctx, "ins-again", path, kind="instructions", seed=3)
    other = data.add_dataset(ctx, "ins-other", path, kind="instructions", seed=4)
    assert data.read_instructions(ctx, again, "train") == splits["train"]
    assert data.read_instructions(ctx, other, "train") != splits["train"]
    assert record.sha256 == again.sha256 == other.sha256  # the data, not its shuffle


def test_alpaca_input_is_appended_to_the_instruction(ctx, tmp_path):
    record = data.add_dataset(ctx, "alpaca", write(tmp_path, "a.jsonl", instruction_lines(10, alpaca=True)), kind="instructions")
    records = {r["messages"][1]["content"]: r["messages"] for s in data.SPLITS
               for r in data.read_instructions(ctx, record, s)}
    assert records["1"][0] == {"role": "user", "content": "Add 0 and 1.\n\ncontext 0"}
    assert records["2"][0]["content"] == "Add 1 and 1."
    tokenizer = data.gpt2_tokenizer(ctx)
    expected = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"])
                   for messages in records.values() for m in messages)
    assert record.tokens == expected


def test_unusual_line_separators_inside_records_survive(ctx, tmp_path):
    rows = [{"instruction": f"Q{i}\u2028next\x85line", "response": f"A{i}\r\nB"} for i in range(3)]
    record = data.add_dataset(ctx, "seps", write(tmp_path, "s.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
                              kind="instructions")
    read = sorted((r["messages"] for s in data.SPLITS for r in data.read_instructions(ctx, record, s)),
                  key=lambda m: m[1]["content"])
    assert read == [[{"role": "user", "content": f"Q{i}\u2028next\x85line"},
                     {"role": "assistant", "content": f"A{i}\nB"}] for i in range(3)]


def test_a_json_array_of_alpaca_records_is_accepted(ctx, tmp_path):
    rows = [{"instruction": f"Q{i}", "input": "", "output": f"A{i}"} for i in range(5)]
    record = data.add_dataset(ctx, "array", write(tmp_path, "a.json", json.dumps(rows, indent=1)), kind="instructions")
    assert sum(record.splits.values()) == 5


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", "line 3: not valid JSON"),
    ('["a list"]', "line 3: expected a JSON object"),
    ('{"instruction": "no answer"}', "line 3: needs a non-empty string 'response'"),
    ('{"instruction": "", "response": "x"}', "line 3: needs a non-empty string 'instruction'"),
])
def test_a_bad_instruction_line_is_named(ctx, tmp_path, bad_line, message):
    lines = instruction_lines(2) + bad_line + "\n" + instruction_lines(2)
    with pytest.raises(WorkbenchError, match=message):
        data.add_dataset(ctx, "bad", write(tmp_path, "bad.jsonl", lines), kind="instructions")
    assert_nothing_left(ctx, "bad")


def test_too_few_records_and_wrong_kind_reads_are_refused(ctx, tmp_path):
    with pytest.raises(WorkbenchError, match="at least 3"):
        data.add_dataset(ctx, "two", write(tmp_path, "two.jsonl", instruction_lines(2)), kind="instructions")
    data.add_dataset(ctx, "text", write(tmp_path, "t.txt", paragraphs(30)))
    with pytest.raises(WorkbenchError, match="holds text, not instructions"):
        data.read_instructions(ctx, "text", "train")
    with pytest.raises(WorkbenchError, match="unknown split"):
        data.read_split_text(ctx, "text", "dev")


# ---------------------------------------------------------------- lifecycle


def test_names_are_unique_and_remove_deletes_row_and_folder(ctx, tmp_path):
    path = write(tmp_path, "t.txt", paragraphs(30))
    record = data.add_dataset(ctx, "once", path)
    with pytest.raises(WorkbenchError, match="already registered"):
        data.add_dataset(ctx, "once", path)
    data.remove_dataset(ctx, "once")
    assert ctx.registry.find_dataset("once") is None and not Path(record.path).exists()
    with pytest.raises(WorkbenchError, match="unknown dataset"):
        data.remove_dataset(ctx, "once")


def test_a_failure_while_writing_leaves_no_folder_and_no_row(ctx, tmp_path, monkeypatch):
    import numpy as np

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        data.add_dataset(ctx, "broken", write(tmp_path, "t.txt", paragraphs(30)))
    assert_nothing_left(ctx, "broken")


def test_alice_from_the_shared_corpora(ctx, corpora):
    record = data.add_dataset(ctx, "alice", corpora / "alice.txt")
    assert record.chars < (corpora / "alice.txt").stat().st_size  # CRLF became LF
    assert 39_000 < record.tokens < 40_000  # README: 39,638 tokens before cleaning
    assert 0.78 < record.splits["train"] / record.tokens < 0.82
    train = data.read_split_text(ctx, record, "train")
    assert train.startswith("ALICE'S ADVENTURES IN WONDERLAND")
    assert data.read_split_text(ctx, record, "test").rstrip().endswith("happy summer days.\n\n              THE END")


# ---------------------------------------------------------------- downloads


@pytest.fixture
def book_server(tmp_path):
    """A loopback HTTP server serving a small Gutenberg-style book at /book.txt."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "book.txt").write_bytes((GUTENBERG_HEADER + paragraphs(40).replace("\n", "\r\n") + GUTENBERG_FOOTER).encode())

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_get_book_downloads_cleans_and_registers(ctx, book_server):
    url = f"{book_server}/book.txt"
    record = data.get_book(ctx, "alice", url=url)
    assert (record.name, record.kind, record.source) == ("alice", "text", url)
    assert record.sha256 == hashlib.sha256(paragraphs(40).encode()).hexdigest()
    named = data.get_book(ctx, "poe", url=url, name="poe-copy")
    assert named.name == "poe-copy" and ctx.registry.find_dataset("poe") is None


def test_get_book_says_offline_in_one_line(ctx):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WorkbenchError, match=r"cannot download gulliver from .*: offline") as error:
        data.get_book(ctx, "gulliver", url=f"http://127.0.0.1:{port}/829.txt")
    assert "\n" not in str(error.value)
    assert_nothing_left(ctx, "gulliver")


def test_get_book_reports_http_errors_and_unknown_books(ctx, book_server):
    with pytest.raises(WorkbenchError, match="HTTP 404"):
        data.get_book(ctx, "alice", url=f"{book_server}/missing.txt")
    with pytest.raises(WorkbenchError, match="unknown book 'ulysses'"):
        data.get_book(ctx, "ulysses")
    assert set(data.BOOKS) == {"alice", "poe", "gulliver"}
