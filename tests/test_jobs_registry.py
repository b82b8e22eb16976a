"""Jobs without training: the queue's slot claim, liveness checks, and concurrent registry access
(a job writing metrics at a high rate while another process polls them). No torch is loaded here."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from workbench.core.context import open_workspace
from workbench.core.job_metrics import MetricSink
from workbench.core.jobs import refresh_statuses, pid_alive, hostname
from workbench.core.registry import Registry


@pytest.fixture
def bare(tmp_path):
    ctx = open_workspace(tmp_path / "ws", starter=False)
    yield ctx
    ctx.registry.close()


def _job(registry: Registry, out: str = "out", **changes):
    job = registry.create_job("base", out, None, {}, 10)
    if changes:
        registry.update_job(job.id, **changes)
    return registry.get_job(job.id)


def test_slot_claim_is_fifo_and_respects_the_limit(bare):
    registry, now = bare.registry, time.time()
    # A waiting runner has recorded its host and device before it asks for a slot.
    first = _job(registry, "a", heartbeat_at=now, host="h", device="cpu")
    second = _job(registry, "b", heartbeat_at=now, host="h", device="cpu")
    other_device = _job(registry, "c", heartbeat_at=now, host="h", device="cuda:0")
    # The younger job may not jump the queue while the older one is alive and waiting.
    assert registry.claim_job_slot(second.id, "h", "cpu", 1, now - 30) == "wait"
    assert registry.claim_job_slot(first.id, "h", "cpu", 1, now - 30, pid=1) == "claimed"
    assert registry.claim_job_slot(second.id, "h", "cpu", 1, now - 30) == "wait"
    # Another device has its own slots; a larger limit lets the second one in.
    assert registry.claim_job_slot(other_device.id, "h", "cuda:0", 1, now - 30) == "claimed"
    assert registry.claim_job_slot(second.id, "h", "cpu", 2, now - 30) == "claimed"
    assert registry.get_job(second.id).status == "running"
    assert registry.claim_job_slot(second.id, "h", "cpu", 2, now - 30) == "gone"
    # An older queued job whose heartbeat went stale does not block the line.
    stale = _job(registry, "d", heartbeat_at=now - 100, host="h", device="cpu")
    young = _job(registry, "e", heartbeat_at=now, host="h", device="cpu")
    registry.update_job(first.id, status="completed")
    registry.update_job(second.id, status="completed")
    assert registry.claim_job_slot(young.id, "h", "cpu", 1, now - 30) == "claimed"
    assert registry.get_job(stale.id).status == "queued"
    # An older live job that has not resolved its device yet may be for this device: it goes first.
    registry.update_job(young.id, status="completed")
    undecided = _job(registry, "f", heartbeat_at=now, host="h")
    last = _job(registry, "g", heartbeat_at=now, host="h", device="cpu")
    assert registry.claim_job_slot(last.id, "h", "cpu", 1, now - 30) == "wait"
    assert registry.claim_job_slot(undecided.id, "h", "cpu", 1, now - 30) == "claimed"


def test_refresh_marks_dead_and_stale_jobs_interrupted(bare):
    registry = bare.registry
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = _job(registry, "a", status="running", pid=gone.pid, host=hostname(), heartbeat_at=time.time())
    # A live process that is not a job runner (a reused pid) counts as gone too.
    impostor = _job(registry, "b", status="running", pid=subprocess.os.getpid(), host=hostname(),
                    heartbeat_at=time.time())
    stale = _job(registry, "c", status="running", pid=12345, host="elsewhere", heartbeat_at=time.time() - 100)
    fresh = _job(registry, "d", status="running", pid=12345, host="elsewhere", heartbeat_at=time.time())
    assert not pid_alive(gone.pid) and not pid_alive(subprocess.os.getpid())

    changed = {job.id: job for job in refresh_statuses(bare)}
    assert set(changed) == {dead.id, impostor.id, stale.id}
    assert all(job.status == "interrupted" and job.ended_at for job in changed.values())
    assert "gone" in changed[dead.id].error and "heartbeat" in changed[stale.id].error
    assert registry.get_job(fresh.id).status == "running"
    assert refresh_statuses(bare, stale_s=1e9) == []


WRITER = """
import sys, time, threading
from workbench.core.registry import Registry
from workbench.core.job_metrics import MetricSink
from workbench.core.job_runner import Heartbeat
registry = Registry(sys.argv[1]); job_id = int(sys.argv[2]); n = int(sys.argv[3])
beat = Heartbeat(registry, job_id, interval=0.01); beat.start()   # a job's heartbeat, very often
sink = MetricSink(registry, job_id, None, interval=0.005, max_rows=16)
for step in range(1, n + 1):
    sink([{"step": step, "split": "train", "loss": 1.0 / step, "lr": 1e-3, "grad_norm": 0.5,
           "tokens_per_s": 1000.0}])
    if step % 50 == 0:
        registry.update_job(job_id, step=step)   # other short writes interleaved
sink.flush(); beat.stop()
print("wrote", n, flush=True)
"""

READER = """
import sys, json, time
from workbench.core.registry import Registry
registry = Registry(sys.argv[1]); job_id = int(sys.argv[2]); n = int(sys.argv[3])
last, seen, errors, polls, steps, batches = 0, 0, [], 0, [], 0
print("ready", flush=True)
deadline = time.monotonic() + 120
while seen < n and time.monotonic() < deadline:
    try:
        rows = registry.metrics(job_id, after_id=last)
        registry.get_job(job_id); registry.list_jobs(["running"])
    except Exception as error:   # "database is locked" would land here
        errors.append(repr(error)); continue
    polls += 1
    batches += bool(rows)
    for row in rows:
        assert row.id > last
        last = row.id; seen += 1; steps.append(row.step)
print(json.dumps({"seen": seen, "errors": errors, "polls": polls, "batches": batches,
                  "ordered": steps == sorted(steps)}))
"""


def test_reader_polling_during_high_rate_writes_never_sees_a_lock(bare, tmp_path):
    n = 4000
    job = _job(bare.registry, status="running", heartbeat_at=time.time())
    db = str(bare.ws.db_path)
    (tmp_path / "writer.py").write_text(WRITER)
    (tmp_path / "reader.py").write_text(READER)
    readers = [subprocess.Popen([sys.executable, str(tmp_path / "reader.py"), db, str(job.id), str(n)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for reader in readers:
        assert reader.stdout.readline().strip() == "ready"
    writer = subprocess.run([sys.executable, str(tmp_path / "writer.py"), db, str(job.id), str(n)],
                            capture_output=True, text=True, timeout=120)
    assert writer.returncode == 0, writer.stderr
    assert "locked" not in writer.stderr
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        print(out)
        assert reader.returncode == 0, err
        report = json.loads(out)
        assert report == {**report, "seen": n, "errors": [], "ordered": True}
        assert report["batches"] >= 5  # it saw the rows arrive in many pieces, while they were written
    assert len(bare.registry.metrics(job.id)) == n
    assert bare.registry.get_job(job.id).step == n


def test_metric_sink_batches_and_writes_log_jsonl(bare, tmp_path):
    job = _job(bare.registry)
    log = tmp_path / "log.jsonl"
    sink = MetricSink(bare.registry, job.id, log, interval=3600, max_rows=3)
    sink([{"step": 1, "split": "train", "loss": 2.0, "extra": "dropped"}])
    sink([{"step": 2, "split": "train", "loss": 1.5}])
    assert bare.registry.metrics(job.id) == []  # buffered
    sink([{"step": 2, "split": "val", "loss": 1.7}])
    assert [m.loss for m in bare.registry.metrics(job.id)] == [2.0, 1.5, 1.7]
    assert bare.registry.get_job(job.id).step == 2
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 2] and "extra" not in lines[0]
    # A step the loop is about to checkpoint is stored at once, before the checkpoint is written.
    saving = MetricSink(bare.registry, job.id, None, interval=3600, max_rows=1000, save_every=4)
    saving([{"step": 3, "split": "train", "loss": 1.2}])
    assert len(bare.registry.metrics(job.id)) == 3
    saving([{"step": 4, "split": "train", "loss": 1.1}])
    assert [m.step for m in bare.registry.metrics(job.id)][-2:] == [3, 4]


def test_metric_rows_that_meet_a_locked_registry_stay_buffered_and_are_stored_once(bare, tmp_path):
    """Another process holds the write lock: the sink keeps its rows instead of failing the job, and
    stores them (in the registry and log.jsonl, once each) when the lock is gone."""
    job = _job(bare.registry)
    log = tmp_path / "log.jsonl"
    sink = MetricSink(bare.registry, job.id, log, interval=0, timeout_ms=200)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
         str(bare.ws.db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        sink([{"step": 1, "split": "train", "loss": 2.0}])  # flushes at once (interval 0): meets the lock
        sink([{"step": 2, "split": "train", "loss": 1.5}])
        assert bare.registry.metrics(job.id) == [] and not log.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    sink.flush(final=True)
    assert [m.step for m in bare.registry.metrics(job.id)] == [1, 2]
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]
    assert bare.registry.get_job(job.id).step == 2
