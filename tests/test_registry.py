"""The SQLite registry: records, migrations, and two processes writing at once."""

import sqlite3
import subprocess
import sys

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.registry import MIGRATIONS, SCHEMA_VERSION, ModelRecord, Registry


def _model(name="m", **kw):
    return ModelRecord(name=name, path=f"/x/{name}", arch="gpt-neo", params=10, context_length=64,
                       source="created", **kw)


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
