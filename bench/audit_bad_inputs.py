"""Re-measure the reliability audit (issue 14): bad CLI inputs, a corrupt registry, races, disk full.

    PYTHONPATH=$PWD python bench/audit_bad_inputs.py [--only inputs,corrupt,races,disk,readonly]
    AUDIT_CODE=/path/to/older/checkout python bench/audit_bad_inputs.py   # the same audit, older code

Every case runs `python -m workbench.cli` in its own copy of one initialised workspace (a real SQLite
file, real processes) and is classified from its exit code and output:
  clear      the expected outcome: a user error is one `workbench: error:` line (or an argparse usage
             error) with exit 1 or 2, and no traceback; a case that should succeed exits 0
  traceback  "Traceback" on stderr
  wrong      anything else (a bad input accepted, a hang, a message without the expected words)
The disk-full cases mount a small tmpfs and the read-only ones a read-only bind mount: they need root
and are skipped (and said so) without it. Each child runs under a 12 GB address-space limit so that a
case that allocates without bound fails instead of exhausting the shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("AUDIT_CODE", ROOT))  # the workbench checkout under test (a "before" copy)
CORPORA = ROOT.parent / "shared" / "corpora"
ADDRESS_LIMIT = 12 << 30
HUGE = str(2**70)


@dataclass
class Case:
    label: str
    argv: list[str]
    ok_rc: tuple = (1, 2)  # exit codes that count as the expected outcome
    expect: str | None = None  # words the output must carry (case-insensitive)
    json_error: bool = False  # with --json: stdout must hold {"error": ...}
    timeout: float = 400
    result: str = ""
    detail: str = field(default="", repr=False)


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))


def run_cli(home: Path | str, argv: list[str], timeout: float = 400, env: dict | None = None):
    command = [sys.executable, "-m", "workbench.cli", "--home", str(home), *argv]
    environ = dict(os.environ, PYTHONPATH=str(CODE), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   **(env or {}))
    try:
        # cwd = the code under test: `python -m` puts the current folder first on sys.path.
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=environ, cwd=CODE,
                              preexec_fn=limit_memory)
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return None, "", "timeout"


def classify(case: Case, rc, out: str, err: str) -> str:
    if "Traceback" in err or "Traceback" in out:
        return "traceback"
    if rc not in case.ok_rc:
        return "wrong"
    if rc != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("workbench: error:", "usage:", "workbench"))]
        if not errors:
            return "wrong"
        if rc == 1 and sum(line.startswith("workbench: error:") for line in lines) != 1:
            return "wrong"
    if case.expect and case.expect.lower() not in (err + out).lower():
        return "wrong"
    if case.json_error:
        try:
            if "error" not in json.loads(out):
                return "wrong"
        except ValueError:
            return "wrong"
    return "clear"


def run_case(template: Path, case: Case, scratch: Path, prepare=None) -> Case:
    home = Path(tempfile.mkdtemp(dir=scratch)) / "ws"
    shutil.copytree(template, home)
    if prepare:
        prepare(home)
    rc, out, err = run_cli(home, case.argv, timeout=case.timeout)
    case.result = classify(case, rc, out, err)
    case.detail = f"rc={rc} {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    shutil.rmtree(home.parent, ignore_errors=True)
    return case


# ---------------------------------------------------------------- fixtures on disk


def write_safetensors(path: Path, shape) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


def model_folder(base: Path, name: str, config, shape=(1,)) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    write_safetensors(folder / "model.safetensors", list(shape) if not isinstance(shape, str) else shape)
    return folder


def input_files(base: Path) -> dict[str, Path]:
    base.mkdir(parents=True, exist_ok=True)
    files = {
        "list_config": model_folder(base, "list-config", [1, 2]),
        "string_shape": model_folder(base, "string-shape", {"model_type": "gpt2"}, shape=["3", "5"]),
        "negative_shape": model_folder(base, "negative-shape", {"model_type": "gpt2"}, shape=[-3, 5]),
    }
    nested = base / "nested.jsonl"
    nested.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    files["nested"] = nested
    binary = base / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    files["binary"] = binary
    empty = base / "empty.txt"
    empty.write_text("")
    files["empty"] = empty
    text = base / "small.txt"
    text.write_text("Alice was beginning to get very tired of sitting by her sister on the bank.\n\n" * 40)
    files["text"] = text
    chinese = base / "chinese.txt"
    chinese.write_text("爱丽丝开始对姐姐坐在河岸上无所事事感到非常厌倦。" * 200)
    files["chinese"] = chinese
    files["folder"] = base
    return files


def input_cases(f: dict[str, Path]) -> list[Case]:
    text, folder = str(f["text"]), str(f["folder"])
    cases = [
        Case("models new: path in name", ["models", "new", "a/b"]),
        Case("models new: name ending in newline", ["models", "new", "abc\n"], expect="invalid"),
        Case("models new: leading dot", ["models", "new", ".hidden"]),
        Case("models new: --layers 0", ["models", "new", "m", "--layers", "0"]),
        Case("models new: hidden not multiple of heads", ["models", "new", "m", "--hidden", "100", "--heads", "3"]),
        Case("models new: seed beyond 64 bits", ["models", "new", "m", "--seed", HUGE]),
        Case("models new: size beyond memory", ["models", "new", "m", "--layers", "64", "--hidden", "65536",
                                                "--heads", "64"], expect="memory"),
        Case("models new: --layers abc", ["models", "new", "m", "--layers", "abc"]),
        Case("models new: existing name", ["models", "new", "tiny-neo"], expect="already"),
        Case("models add: missing folder", ["models", "add", "m", "/nonexistent/folder"]),
        Case("models add: a file", ["models", "add", "m", text]),
        Case("models add: config.json is a list", ["models", "add", "m", str(f["list_config"])]),
        Case("models add: string shape", ["models", "add", "m", str(f["string_shape"])]),
        Case("models add: negative shape", ["models", "add", "m", str(f["negative_shape"])]),
        Case("models add: folder without config", ["models", "add", "m", folder]),
        Case("models show: unknown", ["models", "show", "nope"]),
        Case("models rm: unknown", ["models", "rm", "nope"]),
        Case("models rename: bad new name", ["models", "rename", "tiny-neo", "a/b"]),
        Case("models rename: newline name", ["models", "rename", "tiny-neo", "b\n"], expect="invalid"),
        Case("models rename: unknown", ["models", "rename", "nope", "x"]),
        Case("data add: missing file", ["data", "add", "d", "/nonexistent.txt"]),
        Case("data add: binary file", ["data", "add", "d", str(f["binary"])]),
        Case("data add: empty file", ["data", "add", "d", str(f["empty"])]),
        Case("data add: deeply nested JSONL", ["data", "add", "d", str(f["nested"])]),
        Case("data add: a folder", ["data", "add", "d", folder]),
        Case("data add: bad name", ["data", "add", "a b", text]),
        Case("data add: newline name", ["data", "add", "d\n", text], expect="invalid"),
        Case("data add: seed beyond 64 bits", ["data", "add", "d", text, "--kind", "instructions", "--seed", HUGE]),
        Case("data get: --url notaurl", ["data", "get", "alice", "--url", "notaurl"]),
        Case("data get: refused connection", ["data", "get", "alice", "--url", "http://127.0.0.1:9/x"]),
        Case("data show: unknown", ["data", "show", "nope"]),
        Case("data rm: unknown", ["data", "rm", "nope"]),
        Case("jobs show: huge id", ["jobs", "show", HUGE]),
        Case("jobs show: unknown", ["jobs", "show", "12345"]),
        Case("jobs show: not a number", ["jobs", "show", "abc"]),
        Case("jobs logs: unknown", ["jobs", "logs", "77"]),
        Case("jobs wait: --timeout nan", ["jobs", "wait", "1", "--timeout", "nan"], expect="timeout"),
        Case("jobs wait: huge id", ["jobs", "wait", HUGE]),
        Case("jobs cancel: unknown", ["jobs", "cancel", "5"]),
        Case("jobs resume: unknown", ["jobs", "resume", "5"]),
        Case("train: unknown model", ["train", "--model", "nope", "--data", "d", "--out", "o"]),
        Case("train: --steps 0", ["train", "--model", "tiny-neo", "--data", "d", "--out", "o", "--steps", "0"]),
        Case("train: --lr nan", ["train", "--model", "tiny-neo", "--data", "d", "--out", "o", "--lr", "nan"]),
        Case("train: --batch 0", ["train", "--model", "tiny-neo", "--data", "d", "--out", "o", "--batch", "0"]),
        Case("train: seed beyond 64 bits", ["train", "--model", "tiny-neo", "--data", "d", "--out", "o",
                                            "--seed", HUGE]),
        Case("generate: unknown model", ["generate", "nope", "hi"]),
        Case("generate: --max-new-tokens -1", ["generate", "tiny-neo", "hi", "--max-new-tokens", "-1"]),
        Case("generate: --top-p 2", ["generate", "tiny-neo", "hi", "--top-p", "2"]),
        Case("generate: seed beyond 64 bits", ["generate", "tiny-neo", "hi", "--seed", HUGE]),
        Case("generate: non-UTF-8 prompt", ["generate", "tiny-neo", os.fsdecode(b"caf\xe9 \xff"),
                                            "--max-new-tokens", "2"], ok_rc=(0,), expect="replace"),
        Case("chat: unknown model", ["chat", "nope"]),
        Case("dialogue: unknown model", ["dialogue", "tiny-neo", "nope", "--opening", "hi"]),
        Case("eval: --max-regression nan", ["eval", "tiny-neo", "--baseline", "tiny-neo",
                                            "--max-regression", "nan", "--file", text]),
        Case("eval: --style-prompts 0", ["eval", "tiny-neo", "--metrics", "style", "--data", "d",
                                         "--style-prompts", "0"], expect="style-prompts"),
        Case("eval: unknown metric", ["eval", "tiny-neo", "--metrics", "bogus"]),
        Case("eval: --output is a folder", ["eval", "tiny-neo", "--file", text, "--output", folder],
             expect="--output"),
        Case("eval: --output missing parent", ["eval", "tiny-neo", "--file", text, "--output",
                                               "/nonexistent/dir/r.json"], expect="--output"),
        Case("eval: --junit in /proc", ["eval", "tiny-neo", "--file", text, "--junit", "/proc/r.xml"],
             expect="--junit"),
        Case("eval: ppl on Chinese text", ["eval", "tiny-neo", "--file", str(f["chinese"])], ok_rc=(0,)),
        Case("eval list: unknown model", ["eval", "list", "nope"]),
        Case("sessions show: unknown", ["sessions", "show", "nope"]),
        Case("--home is a file", ["--home", text, "data", "list"]),
        Case("--json: unknown model", ["models", "show", "nope", "--json"], json_error=True),
        Case("--json: missing data file", ["data", "add", "d", "/nonexistent.txt", "--json"], json_error=True),
        Case("--json: unknown job", ["jobs", "show", "12345", "--json"], json_error=True),
    ]
    for case in cases:  # "--home X" given after the subcommand wins: drop the default one
        if case.argv[0] == "--home":
            case.argv = case.argv[2:] + ["--home", case.argv[1]]
    return cases


# ---------------------------------------------------------------- corrupt registries


def corrupt(kind: str):
    def prepare(home: Path) -> None:
        db = home / "workbench.db"
        for extra in ("-wal", "-shm"):
            Path(str(db) + extra).unlink(missing_ok=True)
        if kind == "truncated":
            data = db.read_bytes()
            db.write_bytes(data[: len(data) // 3])
        elif kind == "bad header":
            data = bytearray(db.read_bytes())
            data[:16] = b"NOT SQLITE FILE\0"
            db.write_bytes(bytes(data))
        elif kind == "damaged page":
            data = bytearray(db.read_bytes())
            data[4096:8192] = os.urandom(4096)
            db.write_bytes(bytes(data))
        elif kind == "not a database":
            db.write_text("hello, this is a text file\n" * 100)
        elif kind == "folder":
            db.unlink()
            db.mkdir()
        elif kind == "0-byte":
            db.write_bytes(b"")
    return prepare


CORRUPT_KINDS = ("truncated", "bad header", "damaged page", "not a database", "folder", "0-byte")
CORRUPT_COMMANDS = (["models", "list"], ["models", "show", "tiny-neo"], ["data", "list"], ["jobs", "list"],
                    ["sessions", "list"], ["eval", "list"], ["init"], ["models", "rm", "tiny-neo"])


def corrupt_cases() -> list[tuple[Case, object]]:
    return [(Case(f"{kind}: {' '.join(argv)}", list(argv), expect="workbench.db"), corrupt(kind))
            for kind in CORRUPT_KINDS for argv in CORRUPT_COMMANDS]


# ---------------------------------------------------------------- races


def race(template: Path, scratch: Path, label: str, argv_of, n: int = 10) -> dict:
    home = Path(tempfile.mkdtemp(dir=scratch)) / "ws"
    shutil.copytree(template, home)
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: run_cli(home, argv_of(i), timeout=300), range(n)))
    won = sum(rc == 0 for rc, _, _ in results)
    exists = sum(rc == 1 and "already" in err and "Traceback" not in err for rc, _, err in results)
    tracebacks = sum("Traceback" in err for _, _, err in results)
    leftovers = sorted(p.name for p in (home / "models").iterdir() if p.name.startswith("."))
    leftovers += sorted(p.name for p in (home / "data").iterdir() if ".partial" in p.name)
    shutil.rmtree(home.parent, ignore_errors=True)
    ok = won == 1 and exists == n - 1
    return {"race": label, "won": won, "already_exists": exists, "tracebacks": tracebacks,
            "staging_left": leftovers, "result": "clear" if ok and not leftovers else "wrong"}


# ---------------------------------------------------------------- disk full and read-only


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


def tmpfs(size_kib: int) -> Path:
    point = Path(tempfile.mkdtemp(prefix="wb-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(point)], check=True)
    return point


def unmount(point: Path) -> None:
    subprocess.run(["umount", str(point)], check=False)
    point.rmdir()


def fill(folder: Path, leave_kib: int) -> None:
    """Fill the filesystem holding `folder`, leaving about `leave_kib` free."""
    free = shutil.disk_usage(folder).free // 1024 - leave_kib
    if free > 0:
        with open(folder / "filler", "wb") as handle:
            handle.truncate(0)
            handle.write(b"\0" * (free * 1024))


def disk_cases(template: Path, files: dict[str, Path]) -> list[Case]:
    used = sum(p.stat().st_size for p in template.rglob("*") if p.is_file()) // 1024
    cases = []
    for label, argv, ok_rc, leave in (
        ("models new on a full disk", ["models", "new", "m"], (1,), 64),
        ("data add on a full disk", ["data", "add", "d", str(CORPORA / "alice.txt")], (1,), 64),
        ("models list on a full disk", ["models", "list"], (0,), 0),
        ("data list on a full disk", ["data", "list"], (0,), 0),
        ("train on a full disk", ["train", "--model", "tiny-neo", "--data", "d", "--out", "o",
                                  "--steps", "2"], (1,), 64),
    ):
        point = tmpfs(used + 4096)
        try:
            home = point / "ws"
            shutil.copytree(template, home)
            if argv[0] == "train":  # a dataset to train on, added before the disk fills
                run_cli(home, ["data", "add", "d", str(files["text"])])
            fill(point, leave)
            case = Case(label, argv, ok_rc=ok_rc, expect="full" if ok_rc != (0,) else None, timeout=300)
            rc, out, err = run_cli(home, argv, timeout=case.timeout)
            case.result = classify(case, rc, out, err)
            case.detail = f"rc={rc} {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
            cases.append(case)
        finally:
            unmount(point)
    point = tmpfs(2048)
    try:
        case = Case("init on a disk too small", ["init"], expect="space", timeout=300)
        rc, out, err = run_cli(point / "ws", ["init"], timeout=case.timeout)
        case.result = classify(case, rc, out, err)
        case.detail = f"rc={rc} {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
        cases.append(case)
    finally:
        unmount(point)
    return cases


def readonly_cases(template: Path, scratch: Path, files: dict[str, Path]) -> list[Case]:
    home = Path(tempfile.mkdtemp(dir=scratch)) / "ws"
    shutil.copytree(template, home)
    subprocess.run(["mount", "--bind", str(home), str(home)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(home)], check=True)
    cases = [
        Case("read-only: models list", ["models", "list"], ok_rc=(0,)),
        Case("read-only: models show", ["models", "show", "tiny-neo"], ok_rc=(0,)),
        Case("read-only: data list", ["data", "list"], ok_rc=(0,)),
        Case("read-only: jobs list", ["jobs", "list"], ok_rc=(0,)),
        Case("read-only: models new", ["models", "new", "m"], expect="read-only"),
        Case("read-only: data add", ["data", "add", "d", str(files["text"])], expect="read-only"),
        Case("read-only: models rm", ["models", "rm", "tiny-neo"], expect="read-only"),
    ]
    try:
        for case in cases:
            rc, out, err = run_cli(home, case.argv, timeout=case.timeout)
            case.result = classify(case, rc, out, err)
            case.detail = f"rc={rc} {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    finally:
        subprocess.run(["umount", str(home)], check=False)
    return cases


# ---------------------------------------------------------------- main


def summary(title: str, cases: list[Case]) -> dict:
    counts = {k: sum(c.result == k for c in cases) for k in ("clear", "traceback", "wrong")}
    print(f"\n== {title}: {counts['clear']} of {len(cases)} clear, {counts['traceback']} tracebacks, "
          f"{counts['wrong']} wrong")
    for case in cases:
        if case.result != "clear":
            print(f"  {case.result:<9} {case.label}: {case.detail}")
    return {"total": len(cases), **counts}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="inputs,corrupt,races,disk,readonly")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="wb-audit-"))
    template = scratch / "template"
    rc, _, err = run_cli(template, ["init"], timeout=600)
    if rc != 0:
        print(f"init failed: {err}")
        return 1
    run_cli(template, ["data", "add", "d", str(CORPORA / "alice.txt")], timeout=600)
    run_cli(template, ["models", "new", "other", "--layers", "1", "--hidden", "32", "--heads", "2"], timeout=600)
    files = input_files(scratch / "inputs")
    figures = {}
    with ThreadPoolExecutor(args.workers) as pool:
        if "inputs" in parts:
            cases = list(pool.map(lambda c: run_case(template, c, scratch), input_cases(files)))
            figures["bad inputs"] = summary("bad inputs", cases)
        if "corrupt" in parts:
            cases = list(pool.map(lambda cp: run_case(template, cp[0], scratch, cp[1]), corrupt_cases()))
            figures["corrupt database"] = summary("corrupt database", cases)
    if "races" in parts:
        races = [
            race(template, scratch, "10 x models new same", lambda i: ["models", "new", "same"]),
            race(template, scratch, "10 x data add same", lambda i: ["data", "add", "same", str(files["text"])]),
            race(template, scratch, "10 x models rename other same",
                 lambda i: ["models", "rename", "other", "same"]),
        ]
        print("\n== races")
        for r in races:
            print(f"  {r}")
        figures["races"] = {"total": len(races), "clear": sum(r["result"] == "clear" for r in races),
                            "detail": races}
    for name, builder in (("disk", lambda: disk_cases(template, files)),
                          ("readonly", lambda: readonly_cases(template, scratch, files))):
        if name in parts:
            if not can_mount():
                print(f"\n== {name}: skipped (needs root to mount a tmpfs / read-only bind mount)")
                continue
            figures[name] = summary(name, builder())
    shutil.rmtree(scratch, ignore_errors=True)
    print("\n" + json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "detail"} for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
