"""`workbench doctor [--repair]` on real workspaces: a damaged or emptied registry rebuilt from the folders,
rows without folders, folders without rows, leftovers of crashed writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

from workbench.core.doctor import run_doctor
from workbench.core.registry import Registry


def doctor(home, *args):
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), "doctor", "--json", *args],
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def kinds(report) -> list[tuple[str, bool]]:
    return sorted((f["kind"], f["repaired"]) for f in report["findings"])


def test_a_healthy_workspace_is_healthy(home):
    assert doctor(home) == (0, {"healthy": True, "findings": []})


def test_rows_without_folders_and_folders_without_rows_are_found_and_mended(ctx, home, tmp_path):
    from workbench.core.data import add_dataset

    source = tmp_path / "words.txt"
    source.write_text("Once upon a midnight dreary, while I pondered, weak and weary.\n\n" * 40)
    add_dataset(ctx, "words", source)
    shutil.copytree(home / "models" / "tiny-neo", home / "models" / "found")  # a folder without a row
    shutil.copytree(home / "data" / "words", home / "data" / "found-data")
    words = ctx.registry.get_dataset("words")
    ctx.registry.add_dataset(replace(words, name="gone", path=str(home / "data" / "gone")))  # no folder
    (home / "models" / ".x.partial-999999999-abcdef").mkdir()  # a dead process's staging folder
    ctx.registry.close()

    code, report = doctor(home)
    assert code == 1 and not report["healthy"]
    assert kinds(report) == [("folder-without-row", False)] * 2 + [("leftover", False),
                                                                   ("row-without-folder", False)]
    code, report = doctor(home, "--repair")
    assert code == 0 and report["healthy"] and all(f["repaired"] for f in report["findings"])
    registry = Registry(home / "workbench.db")
    assert registry.get_model("found").path == str(home / "models" / "found")
    assert registry.get_model("found").sha256 == registry.get_model("tiny-neo").sha256
    assert registry.get_dataset("found-data").splits == registry.get_dataset("words").splits
    assert registry.find_dataset("gone") is None
    registry.close()
    assert not (home / "models" / ".x.partial-999999999-abcdef").exists()
    assert doctor(home) == (0, {"healthy": True, "findings": []})


def test_an_emptied_or_damaged_registry_is_set_aside_and_rebuilt_from_the_folders(home):
    db = home / "workbench.db"
    for damage in (lambda: db.write_bytes(b""), lambda: db.write_bytes(b"NOT SQLITE FILE\0" + b"x" * 5000)):
        for extra in ("-wal", "-shm"):
            (home / f"workbench.db{extra}").unlink(missing_ok=True)
        damage()
        code, report = doctor(home)
        assert code == 1 and report["findings"][0]["kind"] == "registry"
        code, report = doctor(home, "--repair")
        assert code == 0 and ("registry", True) in kinds(report) and ("folder-without-row", True) in kinds(report)
        registry = Registry(db)
        assert [m.name for m in registry.list_models()] == ["tiny-neo"]
        registry.close()
    assert len(list(home.glob("workbench.db.damaged-*"))) >= 1  # the damaged file is kept, never deleted


def test_run_doctor_reports_an_integrity_failure(home):
    # A page of the models table overwritten in place: the header still reads, the check does not pass.
    db = home / "workbench.db"
    registry = Registry(db)
    for i in range(40):
        registry.db.execute("INSERT INTO evaluations (model, metric, value, settings, details) "
                            "VALUES (?, 'ppl', 1.0, ?, '{}')", [f"m{i}", "x" * 500])
    registry.db.conn.commit()
    registry.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    registry.close()
    data = bytearray(db.read_bytes())
    data[-4096 * 3:-4096 * 2] = bytes(4096)
    db.write_bytes(bytes(data))
    findings = run_doctor(home)
    assert findings and findings[0].kind in ("registry", "integrity") and not findings[0].repaired
    repaired = run_doctor(home, repair=True)
    assert repaired[0].repaired
    assert [m.name for m in Registry(db).list_models()] == ["tiny-neo"]
