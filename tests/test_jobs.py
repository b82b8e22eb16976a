"""Background jobs end to end: real detached processes training a tiny model on a small text.

Each job is a real `python -m workbench.core.job_runner` in its own session (and torchrun for --nproc 2).
Tests wait on conditions with deadlines (`until`), never on bare sleeps. Faults that must land at a
precise moment (a rank that fails, a kill in the middle of a checkpoint write) are injected with a
`sitecustomize.py` placed on the job's PYTHONPATH: the production code has no test hooks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.job_removal import remove_job
from workbench.core.jobs import (cancel_job, follow_metrics, launch_job, pid_alive, refresh_statuses,
                                 register_job_model, resume_job, wait_job)

TIMEOUT = 240  # generous deadline for one job on two busy cores


def until(condition, timeout: float = TIMEOUT, what: str = "condition", poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


TEXT = "\n".join(
    f"Line {i}: the {w} cat sat on the {v} mat and looked at the {u} moon." for i, (w, v, u) in
    enumerate(zip(["black", "white", "grey", "small", "large"] * 60, ["red", "blue", "green"] * 100,
                  ["full", "new", "pale", "bright"] * 75)))


@pytest.fixture
def jobctx(ctx, tmp_path):
    """A workspace with a tiny model `mini` and a small text dataset `lines`."""
    from workbench.core.data import add_dataset
    from workbench.core.models import ModelShape, create_model

    create_model(ctx.ws, ctx.registry, "mini", "gpt-neo", ModelShape(layers=1, hidden=32, heads=2, context=64))
    source = tmp_path / "lines.txt"
    source.write_text(TEXT)
    add_dataset(ctx, "lines", source)
    yield ctx
    for job in ctx.registry.list_jobs(["queued", "running"]):  # a failed test leaves no job running
        if pid_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def make_config(out: str, **changes):
    from workbench.core.training.config import TrainConfig

    settings = dict(base_model="mini", dataset="lines", out=out, steps=12, batch=4, seq=32, lr=3e-3,
                    warmup=2, eval_every=6, save_every=4, keep_checkpoints=2, seed=1, precision="fp32",
                    device="cpu")
    settings.update(changes)
    return TrainConfig(**settings)


def inject(monkeypatch, tmp_path: Path, code: str) -> None:
    """Run `code` at start-up in every process a job starts (runner, torchrun, ranks)."""
    folder = tmp_path / "inject"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


def train_losses(ctx, job_id: int, split: str = "train") -> dict[int, float]:
    return {m.step: m.loss for m in ctx.registry.metrics(job_id, split=split)}


def stdout_of(ctx, job_id: int) -> str:
    path = ctx.ws.job_dir(job_id) / "stdout.log"
    return path.read_text(errors="replace") if path.exists() else ""


def assert_ended(ctx, job_id: int, status: str, timeout: float = TIMEOUT):
    job = wait_job(ctx, job_id, timeout=timeout)
    assert job.status == status, f"job {job_id} {job.status}: {job.error}\n{stdout_of(ctx, job_id)[-3000:]}"
    return job


def loadable(folder: str | Path) -> None:
    """A checkpoint's model loads with plain transformers."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
    assert model.num_parameters() > 0


# ---------------------------------------------------------------- detach, follow, queue


def test_detach_follow_until_completion_with_a_queued_second_job(jobctx):
    ctx = jobctx
    first = launch_job(ctx, make_config("mini-a", steps=16), max_concurrent=1)
    second = launch_job(ctx, make_config("mini-b", steps=4, save_every=0), max_concurrent=1)
    assert first.status == "queued" and first.pid  # returned at once, before the process got far

    # The second job waits its turn while the first one holds the CPU slot.
    until(lambda: ctx.registry.get_job(first.id).status == "running", what="first job running")
    second_now = until(lambda: (j := ctx.registry.get_job(second.id)).device and j, what="second job waiting")
    assert second_now.status == "queued" and pid_alive(second_now.pid)

    rows = list(follow_metrics(ctx, first.id, poll=0.1))
    job = assert_ended(ctx, first.id, "completed")
    train = [r.step for r in rows if r.split == "train"]
    assert train == list(range(1, 17))  # every step, in order, each once
    assert {r.step for r in rows if r.split == "val"} >= {6, 12}
    assert all(math.isfinite(r.loss) for r in rows) and all(r.lr is not None for r in rows if r.split == "train")
    assert job.step == job.total_steps == 16 and job.ended_at and job.error is None
    model = ctx.registry.get_model("mini-a")
    assert model.job_id == first.id and model.parent == "mini"
    loadable(model.path)
    logged = [json.loads(line) for line in (ctx.ws.job_dir(first.id) / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["split"] == "train"] == train
    spec = json.loads((ctx.ws.job_dir(first.id) / "job.json").read_text())
    assert spec["config"]["steps"] == 16 and spec["launch"]["nproc"] == 1

    later = assert_ended(ctx, second.id, "completed")
    assert later.started_at >= job.ended_at  # it started only once the slot was free


def workbench(home, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), *args],
                            capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_cli_train_detach_then_logs_follow_until_completion(jobctx):
    home = jobctx.ws.home
    started = json.loads(workbench(home, "train", "--model", "mini", "--data", "lines", "--out", "mini-cli",
                                   "--steps", "6", "--batch", "4", "--seq", "32", "--eval-every", "3",
                                   "--precision", "fp32", "--device", "cpu", "--detach", "--json").stdout)
    job_id = started["id"]
    assert started["status"] in ("queued", "running") and started["pid"]
    follow = workbench(home, "jobs", "logs", str(job_id), "--follow", "--json")
    rows = [json.loads(line) for line in follow.stdout.splitlines()]  # JSON lines, data only
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if r["split"] == "val"] == [3, 6]
    assert "completed" in follow.stderr
    shown = json.loads(workbench(home, "jobs", "show", str(job_id), "--json").stdout)
    assert shown["status"] == "completed" and shown["model"] == "mini-cli" and shown["step"] == 6
    assert shown["last_losses"]["val"]["step"] == 6
    listed = json.loads(workbench(home, "jobs", "list", "--json").stdout)
    assert [(j["id"], j["status"]) for j in listed] == [(job_id, "completed")]
    assert json.loads(workbench(home, "jobs", "wait", str(job_id), "--json").stdout)["status"] == "completed"
    again = workbench(home, "jobs", "resume", str(job_id), check=False)
    assert again.returncode == 1 and "completed" in again.stderr and "Traceback" not in again.stderr
    cancel = workbench(home, "jobs", "cancel", str(job_id), check=False)
    assert cancel.returncode == 1 and "nothing to cancel" in cancel.stderr
    bad = workbench(home, "train", "--model", "mini", "--data", "lines", "--out", "x", "--nproc", "2", check=False)
    assert bad.returncode == 1 and "--detach" in bad.stderr


# ---------------------------------------------------------------- cancel


def test_cancel_mid_run_checkpoints_and_the_model_so_far_registers(jobctx):
    ctx = jobctx
    job = launch_job(ctx, make_config("mini-c", steps=5000, save_every=0, eval_every=0))
    until(lambda: ctx.registry.get_job(job.id).step >= 3, what="a few steps")
    with pytest.raises(WorkbenchError, match="cancel it first"):
        remove_job(ctx, job.id)  # a running job is never deleted under its runner
    asked = cancel_job(ctx, job.id)
    assert asked.status == "running"  # SIGTERM asks; the job decides when to stop
    done = assert_ended(ctx, job.id, "cancelled")
    assert done.last_checkpoint and (Path(done.last_checkpoint) / "COMPLETE").exists()
    assert 3 <= done.step < 5000
    assert ctx.registry.find_model("mini-c") is None  # nothing registered behind the user's back
    loadable(Path(done.last_checkpoint) / "model")
    record = register_job_model(ctx, job.id)
    assert record.name == f"mini-c-step{done.step}" and record.job_id == job.id
    loadable(record.path)

    # Deleting the ended job frees its folder and history; the model it made stays, unlinked from it.
    removed = remove_job(ctx, job.id)
    assert removed.kept_models == [record.name] and removed.freed_bytes > 0
    assert not ctx.ws.job_dir(job.id).exists() and ctx.registry.metrics(job.id) == []
    with pytest.raises(WorkbenchError, match="unknown job"):
        ctx.registry.get_job(job.id)
    kept = ctx.registry.get_model(record.name)
    assert kept.job_id is None and kept.parent == record.parent
    loadable(kept.path)


# ---------------------------------------------------------------- SIGKILL and resume


@pytest.fixture
def reference_run(jobctx, tmp_path):
    """The uninterrupted run of make_config(), trained in this process: its metric rows by (split, step)."""
    from workbench.core.training.loop import train

    rows: list[dict] = []
    result = train(jobctx, make_config("mini-ref"), tmp_path / "reference", on_metrics=rows.extend,
                   progress=False)
    assert result.steps_done == 12 and not result.stopped
    return {(r["split"], r["step"]): r["loss"] for r in rows}


# Every process the job starts runs this first: at the checkpoint of step WB_PAUSE_AT, once every file
# of the checkpoint is written but before its COMPLETE marker and rename, it says so and hangs, so the
# test's SIGKILL lands in the middle of the checkpoint write (deterministically, no race).
PAUSE_IN_CHECKPOINT = """
import os, pathlib, time
if os.environ.get("WB_PAUSE_AT"):
    import workbench.core.training.checkpoints as checkpoints
    _original = checkpoints.write_checkpoint

    def write_checkpoint(run_dir, step, write, keep):
        def paused(folder):
            write(folder)
            pathlib.Path(os.environ["WB_PAUSE_MARKER"]).write_text(str(folder))
            time.sleep(3600)
        return _original(run_dir, step, paused if step == int(os.environ["WB_PAUSE_AT"]) else write, keep)

    checkpoints.write_checkpoint = write_checkpoint
"""


def test_sigkill_during_a_checkpoint_write_then_resume_matches_an_uninterrupted_run(
        jobctx, reference_run, monkeypatch, tmp_path):
    ctx = jobctx
    marker = tmp_path / "paused-in-checkpoint"
    inject(monkeypatch, tmp_path, PAUSE_IN_CHECKPOINT)
    monkeypatch.setenv("WB_PAUSE_AT", "8")
    monkeypatch.setenv("WB_PAUSE_MARKER", str(marker))
    job = launch_job(ctx, make_config("mini-k"))
    until(marker.exists, what="the job to be inside the step-8 checkpoint write")
    temp = Path(marker.read_text())
    assert temp.name.startswith(".step-8.tmp") and (temp / "optimizer.pt").exists()
    pid = ctx.registry.get_job(job.id).pid
    os.killpg(pid, signal.SIGKILL)
    until(lambda: not pid_alive(pid), what="the job process to die")

    changed = refresh_statuses(ctx)
    assert [j.id for j in changed] == [job.id]
    killed = ctx.registry.get_job(job.id)
    assert killed.status == "interrupted" and "gone" in killed.error
    checkpoints = ctx.ws.job_dir(job.id) / "checkpoints"
    assert Path(killed.last_checkpoint) == checkpoints / "step-4"  # the previous one, complete
    assert not (checkpoints / "step-8").exists() and temp.exists()  # the half-written one is not it
    loadable(Path(killed.last_checkpoint) / "model")
    # Rows still in the sink's buffer die with the process, but never those up to the last checkpoint.
    assert 4 <= killed.step <= 8
    assert [m.step for m in ctx.registry.metrics(job.id, split="train")][:4] == [1, 2, 3, 4]

    monkeypatch.delenv("WB_PAUSE_AT")
    resumed = resume_job(ctx, job.id)
    assert resumed.id == job.id and resumed.status in ("queued", "running") and resumed.error is None
    done = assert_ended(ctx, job.id, "completed")
    assert done.step == 12 and ctx.registry.get_model("mini-k").job_id == job.id
    assert not temp.exists()  # the next save swept the stale temporary folder
    losses = {(m.split, m.step): m.loss for m in ctx.registry.metrics(job.id)}
    assert sorted(k for k in losses if k[0] == "train") == [("train", s) for s in range(1, 13)]
    assert losses.keys() == reference_run.keys()
    for key, loss in reference_run.items():  # the same run, step for step
        assert losses[key] == pytest.approx(loss, rel=1e-5, abs=1e-6), key
    assert "resuming from" in stdout_of(ctx, job.id)
    # The replayed steps (5 to 8) are in log.jsonl once, as in the registry.
    logged = [json.loads(line) for line in (ctx.ws.job_dir(job.id) / "log.jsonl").read_text().splitlines()]
    assert sorted(row["step"] for row in logged if row["split"] == "train") == list(range(1, 13))


def test_a_stalled_runner_is_not_declared_dead_and_a_resume_is_refused_while_it_lives(jobctx):
    """A runner frozen past the heartbeat timeout (SIGSTOP: a suspended VM, an I/O stall) still holds
    its lock: it is not marked interrupted, a resume and a second runner are refused, and once it
    wakes it finishes the job with each metric row once."""
    ctx = jobctx
    job = launch_job(ctx, make_config("mini-stall", steps=24, save_every=4))
    until(lambda: ctx.registry.get_job(job.id).step >= 2, what="the job to train a few steps")
    pid = ctx.registry.get_job(job.id).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        beat = ctx.registry.get_job(job.id).heartbeat_mono
        until(lambda: time.monotonic() - beat > 1.5, what="the heartbeat to go stale", poll=0.2)
        assert refresh_statuses(ctx, stale_s=1.0) == []
        assert ctx.registry.get_job(job.id).status == "running"
        # Whatever declared it interrupted (an older workbench, a view from another host), no resume
        # starts a second runner while this one lives.
        ctx.registry.update_job(job.id, status="interrupted")
        with pytest.raises(WorkbenchError, match="still (alive|active)"):
            resume_job(ctx, job.id)
        assert ctx.registry.get_job(job.id).status == "running"  # its live runner overrules the verdict
        second = subprocess.run([sys.executable, "-m", "workbench.core.job_runner", "--home", str(ctx.ws.home),
                                 "--job", str(job.id)], capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and "already has a live runner" in second.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    done = assert_ended(ctx, job.id, "completed")
    assert done.step == 24
    steps = [m.step for m in ctx.registry.metrics(job.id, split="train")]
    assert steps == list(range(1, 25))  # no duplicate rows
    assert ctx.registry.get_model("mini-stall").job_id == job.id


def test_a_second_cancel_kills_a_job_that_does_not_stop(jobctx, monkeypatch, tmp_path):
    ctx = jobctx
    marker = tmp_path / "paused-in-checkpoint"
    inject(monkeypatch, tmp_path, PAUSE_IN_CHECKPOINT)  # the job hangs inside its step-4 checkpoint
    monkeypatch.setenv("WB_PAUSE_AT", "4")
    monkeypatch.setenv("WB_PAUSE_MARKER", str(marker))
    job = launch_job(ctx, make_config("mini-stuck"))
    until(marker.exists, what="the job to hang in a checkpoint write")
    pid = ctx.registry.get_job(job.id).pid
    assert cancel_job(ctx, job.id).status == "running"  # SIGTERM: noted, but the job is stuck
    until(lambda: "checkpointing and stopping" in stdout_of(ctx, job.id), what="the job to note the SIGTERM")
    assert pid_alive(pid) and ctx.registry.get_job(job.id).status == "running"
    killed = cancel_job(ctx, job.id)  # the second cancel kills the process group
    assert killed.status == "cancelled" and "SIGKILL" in killed.error
    assert not pid_alive(pid) and killed.last_checkpoint is None  # step 4 never completed


# ---------------------------------------------------------------- SIGHUP


LAUNCHER = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, whatever its parent ignored (nohup)
from workbench.core.context import open_workspace
from workbench.core.jobs import launch_job, follow_metrics
from workbench.core.training.config import TrainConfig
ctx = open_workspace(sys.argv[1], starter=False)
job = launch_job(ctx, TrainConfig.from_dict(__import__("json").loads(sys.argv[2])))
print(job.id, flush=True)
for row in follow_metrics(ctx, job.id):   # like the app or `jobs logs -f`: attached to the job
    print(row.step, row.loss, flush=True)
"""


def test_sighup_to_the_launcher_leaves_the_job_running(jobctx, tmp_path):
    ctx = jobctx
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    config = make_config("mini-h", steps=40, save_every=0, eval_every=0)
    # The launcher leads its own session, as a shell in a terminal does; a hang-up hits its group.
    launcher = subprocess.Popen([sys.executable, str(script), str(ctx.ws.home), json.dumps(config.to_dict())],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    job_id = int(launcher.stdout.readline())
    until(lambda: ctx.registry.get_job(job_id).step >= 2, what="the job training")
    assert launcher.stdout.readline()  # the launcher is attached and following
    os.killpg(launcher.pid, signal.SIGHUP)
    assert launcher.wait(timeout=30) == -signal.SIGHUP
    launcher.stdout.close()
    job = ctx.registry.get_job(job_id)
    os.kill(job.pid, signal.SIGHUP)  # even a hang-up sent to the job itself is ignored
    assert refresh_statuses(ctx) == []
    assert ctx.registry.get_job(job_id).status == "running"
    done = assert_ended(ctx, job_id, "completed")
    assert done.step == 40 and ctx.registry.find_model("mini-h")


# ---------------------------------------------------------------- torchrun


def test_two_process_torchrun_matches_one_process(jobctx, reference_run):
    ctx = jobctx
    job = launch_job(ctx, make_config("mini-ddp"), nproc=2)
    done = assert_ended(ctx, job.id, "completed")
    assert done.step == 12
    losses = {(m.split, m.step): m.loss for m in ctx.registry.metrics(job.id)}
    assert losses.keys() == reference_run.keys()  # rank 0 alone reported: each row once
    for key, loss in reference_run.items():  # same global batch of 4 as 2 x 2
        assert losses[key] == pytest.approx(loss, rel=1e-4), key
    assert ctx.registry.get_model("mini-ddp").job_id == job.id
    output = stdout_of(ctx, job.id)
    assert "torch.distributed.run" not in output or "FAILED" not in output


FAIL_ON_RANK_1 = """
import os
if os.environ.get("RANK") == "1":
    import workbench.core.training.loop as loop
    _original = loop._train_step

    def _train_step(run, config, dist, step):
        if step == 2:
            raise RuntimeError("boom on rank one at step 2")
        return _original(run, config, dist, step)

    loop._train_step = _train_step
"""


def test_a_failing_rank_fails_the_job_with_its_traceback(jobctx, monkeypatch, tmp_path):
    ctx = jobctx
    inject(monkeypatch, tmp_path, FAIL_ON_RANK_1)
    job = launch_job(ctx, make_config("mini-fail", save_every=0), nproc=2)
    done = assert_ended(ctx, job.id, "failed")
    assert done.error.startswith("rank 1:")
    assert "RuntimeError: boom on rank one at step 2" in done.error
    assert "_train_step" in done.error  # the traceback's last lines, not just the message
    assert ctx.registry.find_model("mini-fail") is None
