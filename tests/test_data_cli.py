"""`workbench data ...` end to end in a temporary workspace."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from workbench.cli import main

GUTENBERG_HEADER = "The Project Gutenberg eBook of Gulliver\n*** START OF THE PROJECT GUTENBERG EBOOK GULLIVER ***\n"
GUTENBERG_FOOTER = "\n*** END OF THE PROJECT GUTENBERG EBOOK GULLIVER ***\nlicence text\n"


def paragraphs(count: int) -> str:
    return "\n\n".join(f"Paragraph {p} has a few words.\nAnd a second line." for p in range(count)) + "\n"


def instruction_lines(count: int) -> str:
    return "".join(json.dumps({"instruction": f"Add {i} and 1.", "input": "", "output": f"{i + 1}"}) + "\n"
                   for i in range(count))


def run_cli(capsys, home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, home: Path, *argv: str):
    code, out, err = run_cli(capsys, home, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_add_list_show_rm_round_trip_with_json(home, tmp_path, capsys):
    corpus = tmp_path / "story.txt"
    corpus.write_text(paragraphs(50).replace("\n", "\r\n"), newline="")
    added = run_json(capsys, home, "data", "add", "story", str(corpus), "--seed", "5")
    assert (added["name"], added["kind"], added["seed"]) == ("story", "text", 5)
    assert added["tokens"] == sum(added["splits"].values()) > 0

    listed = run_json(capsys, home, "data", "list")
    assert [d["name"] for d in listed] == ["story"]

    shown = run_json(capsys, home, "data", "show", "story")
    assert shown["sha256"] == added["sha256"] and shown["encoding"] == "utf-8"
    assert {"train.txt", "val.txt", "test.txt", "meta.json"} <= set(shown["files"])

    assert run_json(capsys, home, "data", "rm", "story") == {"removed": "story"}
    assert run_json(capsys, home, "data", "list") == []
    assert not (home / "data" / "story").exists()


def test_jsonl_files_default_to_instructions_and_text_output_is_readable(home, tmp_path, capsys):
    records = tmp_path / "pairs.jsonl"
    records.write_text(instruction_lines(30))
    code, out, err = run_cli(capsys, home, "data", "add", "pairs", str(records))
    assert code == 0, err
    assert out.startswith("registered 'pairs': instructions, ")
    assert out.strip().endswith("train/val/test 24 / 3 / 3 records")
    code, out, _ = run_cli(capsys, home, "data", "list")
    assert code == 0 and "pairs" in out and "instructions" in out and "24/3/3" in out


@pytest.mark.parametrize("argv, message", [
    (["data", "add", "x", "/no/such/file.txt"], "no such file"),
    (["data", "show", "ghost"], "unknown dataset 'ghost'"),
    (["data", "rm", "ghost"], "unknown dataset 'ghost'"),
])
def test_errors_exit_1_with_one_line(home, capsys, argv, message):
    code, out, err = run_cli(capsys, home, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("workbench: error: ") and message in err


def test_a_bad_jsonl_line_is_one_line_error(home, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(instruction_lines(3) + "{oops\n")
    code, _, err = run_cli(capsys, home, "data", "add", "bad", str(bad))
    assert code == 1 and "line 4: not valid JSON" in err and err.count("\n") == 1
    assert not (home / "data" / "bad").exists()


def test_get_from_a_loopback_server_and_offline(home, tmp_path, capsys):
    root = tmp_path / "site"
    root.mkdir()
    (root / "pg829.txt").write_bytes((GUTENBERG_HEADER + paragraphs(40) + GUTENBERG_FOOTER).encode())

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pg829.txt"
    try:
        record = run_json(capsys, home, "data", "get", "gulliver", "--url", url, "--name", "swift")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (record["name"], record["source"]) == ("swift", url)

    code, out, err = run_cli(capsys, home, "data", "get", "gulliver", "--url", url)  # server now closed
    assert code == 1 and out == ""
    progress, error = err.splitlines()
    assert progress.startswith("downloading Jonathan Swift, Gulliver's Travels")
    assert error.startswith("workbench: error: cannot download gulliver from") and ": offline" in error


def test_subprocess_end_to_end_with_the_shared_alice(home, corpora):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "--home", str(home), "data", "add", "alice",
         str(corpora / "alice.txt"), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["kind"] == "text" and 39_000 < row["tokens"] < 40_000
    usage = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), "data", "get", "ulysses"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert usage.returncode == 2  # bad usage: not one of the known books
