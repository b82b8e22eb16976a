"""The SQLite registry: records, migrations, and two processes writing at once."""

import sqlite3
import subprocess
import sys

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.registry import MIGRATIONS, SCHEMA_VERSION, ModelRecord, Registry


def _model(name="m", **kw):
    kw.setdefault("path", f"/x/{name}")
    return ModelRecord(name=name, arch="gpt-neo", params=10, context_length=64, source="created", **kw)


def test_fresh_database_is_at_latest_schema_in_wal_mode(tmp_path):
    registry = Registry(tmp_path / "w.db")
    assert registry.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert registry.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert set(registry.db.table_names()) >= {"models", "datasets", "jobs", "metrics", "evaluations", "sessions"}


def test_migrations_apply_in_order_from_an_older_version(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    import sqlite_utils

    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO models (name, path, arch, params, context_length, source, meta) "
                 "VALUES ('kept', '/p', 'gpt2', 1, 8, 'created', '{}')")
    conn.commit()
    conn.close()
    registry = Registry(path)
    assert registry.schema_version == SCHEMA_VERSION
    assert registry.get_model("kept").arch == "gpt2"  # data survives the upgrade
    indexes = {i.name for i in registry.db["jobs"].indexes}
    assert any("status" in name for name in indexes)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Registry(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorkbenchError, match="newer"):
        Registry(path)


def test_records_round_trip_as_dataclasses(tmp_path):
    registry = Registry(tmp_path / "w.db")
    registry.add_model(_model("base"))
    registry.add_model(_model("child", parent="base", adapter=True, meta={"lr": 0.1}))
    child = registry.get_model("child")
    assert isinstance(child, ModelRecord)
    assert child.adapter is True and child.meta == {"lr": 0.1} and child.parent == "base"
    assert [m.name for m in registry.children_of("base")] == ["child"]
    with pytest.raises(WorkbenchError, match="already registered"):
        registry.add_model(_model("base"))
    with pytest.raises(WorkbenchError, match="unknown model"):
        registry.get_model("nope")


def test_job_status_compare_and_set(tmp_path):
    registry = Registry(tmp_path / "w.db")
    job = registry.create_job("a", "b", None, {"steps": 3}, total_steps=3)
    assert job.status == "queued" and job.config == {"steps": 3}
    assert registry.set_job_status_if(job.id, ["queued"], status="running", pid=42)
    assert not registry.set_job_status_if(job.id, ["queued"], status="running")
    assert registry.get_job(job.id).pid == 42


WRITER = """
import sys
from workbench.core.registry import Registry
registry = Registry(sys.argv[1])
for i in range(200):
    registry.add_metrics(int(sys.argv[2]), [{"step": i, "split": "train", "loss": float(i)}])
"""


def test_two_processes_write_at_once_without_lock_errors(tmp_path):
    path = tmp_path / "w.db"
    Registry(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(job)], stderr=subprocess.PIPE)
             for job in (1, 2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    registry = Registry(path)
    assert len(registry.metrics(1)) == len(registry.metrics(2)) == 200
    assert [m.step for m in registry.metrics(1, after_id=registry.metrics(1)[99].id)] == list(range(100, 200))


# ---------------------------------------------------------------- relative paths, migrations, opening


def _raw(path, sql, args=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_paths_are_stored_relative_so_a_copied_or_moved_workspace_uses_its_own_folders(tmp_path):
    import shutil

    home = tmp_path / "ws"
    (home / "models" / "m").mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "ref"
    registry = Registry(home / "workbench.db")
    registry.add_model(_model("m", path=str(home / "models" / "m")))
    registry.add_model(_model("ref", path=str(outside), referenced=True))
    registry.close()
    assert dict(_raw(home / "workbench.db", "SELECT name, path FROM models")) == {
        "m": "models/m", "ref": str(outside)}
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    moved = tmp_path / "moved"
    home.rename(moved)
    for where in (copy, moved):
        registry = Registry(where / "workbench.db")
        assert registry.get_model("m").path == str(where / "models" / "m")
        assert registry.get_model("ref").path == str(outside)  # outside the workspace: as given
        registry.close()


def _version_3_database(path, model_path: str, ref_path: str) -> None:
    import sqlite_utils

    conn = sqlite3.connect(path)
    db = sqlite_utils.Database(conn)
    for migration in MIGRATIONS[:3]:
        migration(db)
    conn.execute("PRAGMA user_version = 3")
    for name, where, ref in (("m", model_path, 0), ("ref", ref_path, 1)):
        conn.execute("INSERT INTO models (name, path, arch, params, context_length, source, referenced, meta) "
                     "VALUES (?, ?, 'gpt2', 1, 8, 'created', ?, '{}')", [name, where, ref])
    conn.commit()
    conn.close()


def test_migration_backs_up_first_and_adopts_a_copied_workspaces_absolute_paths(tmp_path):
    # A workspace copied before paths became relative: its rows name the original's folders.
    original, copy = tmp_path / "original", tmp_path / "copy"
    (copy / "models" / "m").mkdir(parents=True)
    _version_3_database(copy / "workbench.db", str(original / "models" / "m"), "/opt/shared/ref")
    registry = Registry(copy / "workbench.db")
    assert registry.schema_version == SCHEMA_VERSION
    assert registry.get_model("m").path == str(copy / "models" / "m")
    assert registry.get_model("ref").path == "/opt/shared/ref"
    backup = copy / "workbench.db.bak-v3"
    assert _raw(backup, "PRAGMA user_version") == [(3,)]  # the file as it was before the migration
    assert dict(_raw(backup, "SELECT name, path FROM models"))["m"] == str(original / "models" / "m")
    assert _raw(backup, "PRAGMA integrity_check") == [("ok",)]


HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE models SET params = params + 1")
print("locked", flush=True)
sys.stdin.read()  # hold the write lock until the test closes our stdin
conn.execute("COMMIT")
"""


def test_opening_and_reading_take_no_write_lock_while_another_process_writes(tmp_path):
    path = tmp_path / "w.db"
    registry = Registry(path)
    registry.add_model(_model("m"))
    registry.close()
    writer = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        # Before: every open ran BEGIN IMMEDIATE and waited out the 30 s busy timeout, then failed.
        reader = subprocess.run(
            [sys.executable, "-c", "import sys; from workbench.core.registry import Registry; "
             "print([m.name for m in Registry(sys.argv[1]).list_models()])", str(path)],
            capture_output=True, text=True, timeout=20)
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.strip() == "['m']"
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)


def _damage(path, kind: str) -> None:
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif kind == "bad header":
        path.write_bytes(b"NOT SQLITE FILE\0" + bytes(data[16:]))
    elif kind == "damaged page":
        data[4096:8192] = bytes((i * 7 + 3) % 256 for i in range(4096))
        path.write_bytes(bytes(data))
    elif kind == "not a database":
        path.write_text("a text file\n" * 100)
    elif kind == "folder":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize("kind", ["truncated", "bad header", "damaged page", "not a database", "folder"])
def test_a_damaged_registry_is_one_line_naming_the_file_and_what_to_do(tmp_path, kind):
    path = tmp_path / "workbench.db"
    registry = Registry(path)
    for i in range(30):  # a few pages of rows, so that a damaged page holds some of them
        registry.add_model(_model(f"model-{i}", meta={"pad": "x" * 300}))
    registry.close()
    _damage(path, kind)
    with pytest.raises(WorkbenchError) as caught:
        Registry(path).list_models()
    message = str(caught.value)
    assert str(path) in message and "doctor" in message and "\n" not in message


def test_an_empty_registry_beside_model_folders_is_refused_not_reinitialised(tmp_path):
    (tmp_path / "models" / "kept").mkdir(parents=True)
    path = tmp_path / "workbench.db"
    path.write_bytes(b"")
    with pytest.raises(WorkbenchError, match="empty.*doctor --repair"):
        Registry(path)
    assert path.stat().st_size == 0  # untouched
    (tmp_path / "models" / "kept").rmdir()
    assert Registry(path).schema_version == SCHEMA_VERSION  # nothing to lose: initialised


def test_opening_the_registry_twice_in_one_process_keeps_its_writes_visible_to_others(tmp_path):
    """A second Registry on the same file in one process (the app beside a worker, a test beside the
    app) must not drop the process's SQLite locks: another process closing its connection would then
    delete the WAL under ours, and our later writes would never reach the file."""
    path = tmp_path / "workbench.db"
    first = Registry(path)
    first.add_model(_model("before"))
    second = Registry(path)  # same process, same file
    other = "from workbench.core.registry import Registry; import sys; Registry(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=60)
    first.add_model(_model("after"))
    read = "import sqlite3, sys; print(sorted(r[0] for r in sqlite3.connect(sys.argv[1]).execute('select name from models')))"
    seen = subprocess.run([sys.executable, "-c", read, str(path)], capture_output=True, text=True, timeout=60)
    assert seen.stdout.strip() == "['after', 'before']", seen.stderr
    second.close()
    first.close()
