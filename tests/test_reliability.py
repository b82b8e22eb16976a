"""Faults end to end, as a user meets them: copied and moved workspaces, a damaged registry, a read-only
mount, a full disk (a real tmpfs), races between real processes, and bad input. Each runs the real CLI
in a subprocess and asserts one clear line (exit 1 or 2, no traceback) or the right outcome."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TINY = ["--layers", "1", "--hidden", "32", "--heads", "2", "--context", "32"]


def run(home, *args, check=None, timeout=600, input=None):
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), *args],
                            capture_output=True, timeout=timeout, input=input)
    result.stdout, result.stderr = (result.stdout.decode(errors="replace"),
                                    result.stderr.decode(errors="replace"))
    if check is not None:
        assert result.returncode == check, result.stderr
    return result


def one_line_error(result, *words: str) -> str:
    """The single `workbench: error:` line of a failed command (exit 1, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("workbench: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def usage_error(result, *words: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def needs_mount(what: str):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip(f"{what} needs root to mount (not root here)")


@pytest.fixture
def mounted():
    """Mount points made by a test, unmounted after it."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", str(point)], check=False)


def mount(points: list, *args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    points.append(Path(args[-1]))


# ---------------------------------------------------------------- copied and moved workspaces


def test_rm_in_a_copied_workspace_never_touches_the_originals_files(home, tmp_path):
    original_model = home / "models" / "tiny-neo"
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    run(copy, "models", "rm", "tiny-neo", "--delete-files", check=0)
    assert original_model.is_dir() and not (copy / "models" / "tiny-neo").exists()
    run(home, "models", "show", "tiny-neo", check=0)
    # A row that still names another workspace's folder (an old absolute path): never deleted.
    other = tmp_path / "other"
    shutil.copytree(home, other)
    conn = sqlite3.connect(other / "workbench.db")
    conn.execute("UPDATE models SET path = ? WHERE name = 'tiny-neo'", [str(original_model)])
    conn.commit()
    conn.close()
    result = run(other, "models", "rm", "tiny-neo", "--delete-files", check=0)
    assert "outside the workspace" in result.stdout and original_model.is_dir()


def test_a_moved_workspace_works_as_the_original_did(home, tmp_path):
    moved = tmp_path / "moved"
    home.rename(moved)
    shown = json.loads(run(moved, "models", "show", "tiny-neo", "--json", check=0).stdout)
    assert shown["path"] == str(moved / "models" / "tiny-neo")
    run(moved, "generate", "tiny-neo", "hello", "--max-new-tokens", "2", check=0)


# ---------------------------------------------------------------- a damaged registry


@pytest.mark.parametrize("kind", ["bad header", "folder", "0-byte"])
def test_a_damaged_registry_is_one_line_for_every_command_and_json_gets_it_too(home, kind):
    db = home / "workbench.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    if kind == "bad header":
        db.write_bytes(b"NOT SQLITE FILE\0" + db.read_bytes()[16:])
    elif kind == "folder":
        db.unlink()
        db.mkdir()
    else:
        db.write_bytes(b"")
    for argv in (["models", "list"], ["data", "list"], ["jobs", "list"], ["init"], ["eval", "list"]):
        one_line_error(run(home, *argv), str(db), "doctor")
    result = run(home, "models", "show", "tiny-neo", "--json")
    one_line_error(result, str(db))
    assert str(db) in json.loads(result.stdout)["error"]
    if kind == "0-byte":
        assert db.stat().st_size == 0  # refused, not silently re-initialised


# ---------------------------------------------------------------- read-only workspace and full disk


def test_a_read_only_workspace_lists_and_shows_and_refuses_changes_in_one_line(home, mounted):
    needs_mount("a read-only bind mount")
    run(home, "jobs", "list", check=0)  # the registry's WAL files exist as on a live workspace
    mount(mounted, "--bind", str(home), str(home))
    mount(mounted, "-o", "remount,bind,ro", str(home))
    names = [m["name"] for m in json.loads(run(home, "models", "list", "--json", check=0).stdout)]
    assert names == ["tiny-neo"]
    run(home, "models", "show", "tiny-neo", check=0)
    run(home, "data", "list", check=0)
    run(home, "jobs", "list", check=0)
    one_line_error(run(home, "models", "rm", "tiny-neo"), "read-only")
    source = home.parent / "notes.txt"
    source.write_text("Some words for a dataset.\n\n" * 50)
    one_line_error(run(home, "data", "add", "notes", str(source)), "read-only")


def fill_disk(folder: Path, leave_bytes: int) -> None:
    free = shutil.disk_usage(folder).free - leave_bytes
    with open(folder / "filler", "wb") as handle:
        while free > 0:
            chunk = min(free, 1 << 20)
            try:
                handle.write(b"\0" * chunk)
                handle.flush()
            except OSError:
                break
            free -= chunk


def test_a_full_disk_is_one_line_reads_still_work_and_nothing_is_lost(home, tmp_path, mounted):
    needs_mount("a small tmpfs")
    used = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    mount(mounted, "-t", "tmpfs", "-o", f"size={used + (8 << 20)}", "tmpfs", str(disk))
    ws = disk / "ws"
    shutil.copytree(home, ws)
    before = sqlite3.connect(ws / "workbench.db").execute("SELECT name, path FROM models").fetchall()
    fill_disk(disk, 64 << 10)
    one_line_error(run(ws, "models", "new", "big", *TINY), "full")
    source = tmp_path / "words.txt"
    source.write_text("Alice was beginning to get very tired of sitting by her sister.\n\n" * 4000)
    one_line_error(run(ws, "data", "add", "words", str(source)), "full")
    assert json.loads(run(ws, "models", "list", "--json", check=0).stdout)[0]["name"] == "tiny-neo"
    run(ws, "data", "list", check=0)
    leftovers = [p.name for p in (ws / "models").iterdir()] + [p.name for p in (ws / "data").iterdir()]
    assert leftovers == ["tiny-neo"]  # no half-written model or dataset folder
    (disk / "filler").unlink()
    assert sqlite3.connect(ws / "workbench.db").execute("SELECT name, path FROM models").fetchall() == before
    run(ws, "doctor", check=0)


def test_init_on_a_disk_too_small_for_the_starter_says_so(tmp_path, mounted):
    needs_mount("a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount(mounted, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    one_line_error(run(disk / "ws", "init"), "space")


# ---------------------------------------------------------------- races


def race(argvs: list[list[str]], home: Path) -> list:
    with ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(lambda argv: run(home, *argv), argvs))


def assert_one_winner(results, *words: str) -> None:
    assert [r.returncode for r in results].count(0) == 1, [r.stderr[-300:] for r in results]
    for result in results:
        if result.returncode:
            one_line_error(result, *words)


def test_ten_parallel_models_new_of_one_name_one_wins_the_rest_hear_it_exists(home):
    results = race([["models", "new", "same", *TINY]] * 10, home)
    assert_one_winner(results, "already")
    assert sorted(p.name for p in (home / "models").iterdir()) == ["same", "tiny-neo"]  # no staging left
    run(home, "models", "show", "same", check=0)


def test_parallel_data_add_and_models_rename_of_one_name_one_wins(home, tmp_path):
    source = tmp_path / "words.txt"
    source.write_text("The raven sat upon the bust of Pallas just above my chamber door.\n\n" * 30)
    assert_one_winner(race([["data", "add", "same", str(source)]] * 6, home), "already")
    assert sorted(p.name for p in (home / "data").iterdir() if not p.name.startswith(".gpt2")) == ["same"]
    run(home, "models", "rename", "tiny-neo", "first", check=0)
    results = race([["models", "rename", "first", f"to-{i}"] for i in range(6)], home)
    assert [r.returncode for r in results].count(0) == 1
    for result in results:
        if result.returncode:
            one_line_error(result, "first")
    models = json.loads(run(home, "models", "list", "--json", check=0).stdout)
    winner = next(m for m in models if m["name"].startswith("to-"))
    assert Path(winner["path"]).is_dir() and winner["path"].endswith(winner["name"])


# ---------------------------------------------------------------- honest results, the base of a job


def test_rm_or_rename_of_a_model_a_queued_job_trains_from_is_refused(home):
    from workbench.core.registry import Registry

    registry = Registry(home / "workbench.db")
    job = registry.create_job("tiny-neo", "tuned", None, {}, 10)
    registry.close()
    one_line_error(run(home, "models", "rm", "tiny-neo"), f"job(s) {job.id}")
    one_line_error(run(home, "models", "rename", "tiny-neo", "other"), f"job(s) {job.id}")
    assert (home / "models" / "tiny-neo").is_dir()


def test_rm_whose_deletion_fails_does_not_say_deleted(home, mounted):
    needs_mount("a mount point inside the model folder")
    inner = home / "models" / "tiny-neo" / "busy"
    inner.mkdir()
    mount(mounted, "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(inner))  # a mount point: rmtree fails
    result = run(home, "models", "rm", "tiny-neo", "--delete-files")
    line = one_line_error(result, "could not delete")
    assert "deleted" not in result.stdout


# ---------------------------------------------------------------- bad input


def test_bad_values_are_refused_in_one_line(home, tmp_path):
    huge = str(2**70)
    usage_error(run(home, "models", "new", "m", "--seed", huge), "--seed")
    usage_error(run(home, "jobs", "show", huge), "job id")
    usage_error(run(home, "jobs", "wait", "1", "--timeout", "nan"), "--timeout")
    usage_error(run(home, "eval", "tiny-neo", "--metrics", "style", "--style-prompts", "0"), "--style-prompts")
    one_line_error(run(home, "eval", "tiny-neo", "--baseline", "tiny-neo", "--max-regression", "nan",
                       "--file", __file__), "--max-regression")
    one_line_error(run(home, "models", "new", "name\n", *TINY), "invalid model name")
    one_line_error(run(home, "models", "rename", "tiny-neo", "b\n"), "invalid model name")
    one_line_error(run(home, "models", "new", "huge", "--layers", "64", "--hidden", "65536", "--heads", "64"),
                   "memory")
    nested = tmp_path / "nested.jsonl"
    nested.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(run(home, "data", "add", "d", str(nested)), "nested")
    one_line_error(run(home, "data", "get", "alice", "--url", "notaurl"), "notaurl")
    usage_json = run(home, "jobs", "show", huge, "--json")
    assert "job id" in json.loads(usage_json.stdout)["error"]


def _model_folder(base: Path, name: str, config, shape) -> Path:
    import struct

    folder = base / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return folder


def test_broken_model_folders_are_refused_in_one_line_and_leave_nothing(home, tmp_path):
    cases = [(_model_folder(tmp_path, "list-config", [1, 2], [1]), "json object"),
             (_model_folder(tmp_path, "string-shape", {"model_type": "gpt2"}, ["3", "5"]), "shape"),
             (_model_folder(tmp_path, "negative-shape", {"model_type": "gpt2"}, [-3, 5]), "shape")]
    for folder, words in cases:
        one_line_error(run(home, "models", "add", "m", str(folder)), words)
    assert sorted(p.name for p in (home / "models").iterdir()) == ["tiny-neo"]


def test_eval_output_that_cannot_be_written_is_refused_before_any_work(home, tmp_path):
    for flag, target, words in (("--output", str(tmp_path), "folder"),
                                ("--output", str(tmp_path / "missing" / "r.json"), "does not exist"),
                                ("--junit", "/proc/report.xml", "cannot be written")):
        result = run(home, "eval", "tiny-neo", "--file", __file__, flag, target)
        one_line_error(result, flag, words)
        assert "perplexity" not in result.stderr  # refused before evaluating


def test_non_utf8_prompt_is_replaced_and_said_and_a_model_named_list_evaluates(home, tmp_path):
    result = run(home, "generate", "tiny-neo", os.fsdecode(b"caf\xe9 \xff"), "--max-new-tokens", "2", "--json",
                 check=0)
    assert "not UTF-8" in result.stderr
    assert json.loads(result.stdout)["outputs"][0]["prompt"] == "caf\ufffd \ufffd"
    run(home, "models", "rename", "tiny-neo", "list", check=0)
    text = tmp_path / "chinese.txt"
    text.write_text("爱丽丝开始对姐姐坐在河岸上无所事事感到非常厌倦。" * 20)
    report = json.loads(run(home, "eval", "list", "--file", str(text), "--json", check=0).stdout)
    assert report["results"][0]["model"] == "list"
