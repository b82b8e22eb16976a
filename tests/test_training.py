"""Training engine: loop, checkpoints, exact resume, schedules, settings validation (tiny real models)."""

from __future__ import annotations

import json
import random

import pytest

from workbench.core.errors import WorkbenchError


def synthetic_text(n_words: int = 6000, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house", "little", "queen",
             "said", "Alice", "rabbit", "very", "curious", "door", "garden"]
    lines, line = [], []
    for i in range(n_words):
        line.append(rng.choice(words))
        if len(line) == 12:
            lines.append(" ".join(line) + ".")
            line = []
        if i % 240 == 239:
            lines.append("")
    return "\n".join(lines) + "\n"


@pytest.fixture
def tiny(ctx, tmp_path):
    """A 1-layer GPT-Neo and a small synthetic text dataset in the workspace."""
    from workbench.core import data
    from workbench.core.models import ModelShape, create_model

    create_model(ctx.ws, ctx.registry, "t1", "gpt-neo", ModelShape(1, 32, 2, 64))
    path = tmp_path / "text.txt"
    path.write_text(synthetic_text())
    data.add_dataset(ctx, "words", path)
    return ctx


def cfg(**changes):
    from workbench.core.training import TrainConfig

    base = dict(base_model="t1", dataset="words", out="t1-ft", steps=6, batch=4, seq=32, lr=1e-3, warmup=2,
                eval_every=3, save_every=0, precision="fp32")
    base.update(changes)
    return TrainConfig(**base)


def run(ctx, config, run_dir, **kwargs):
    from workbench.core.training.loop import train

    rows: list[dict] = []
    result = train(ctx, config, run_dir, on_metrics=rows.extend, progress=False, **kwargs)
    return result, rows


def train_losses(rows):
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


def test_config_round_trip_and_contract_fields():
    from workbench.core.training import TrainConfig

    config = cfg(freeze=["*.attn.*"])
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    expected = {"base_model", "dataset", "out", "objective", "letter", "kl_positions", "method", "freeze", "lora_r",
                "lora_alpha", "lora_dropout", "lora_targets", "merge", "steps", "batch", "seq", "lr", "warmup",
                "schedule", "grad_accum", "clip",
                "eval_every", "save_every", "keep_checkpoints", "seed", "precision", "device", "sampling", "compile"}
    assert set(config.to_dict()) == expected
    with pytest.raises(WorkbenchError, match="unknown training settings"):
        TrainConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_the_body_is_compiled_on_a_gpu_for_long_runs_unless_the_user_says(tmp_path):
    from workbench.core.training import TrainConfig
    from workbench.core.training.config import COMPILE_AUTO_MIN_STEPS

    long = COMPILE_AUTO_MIN_STEPS
    assert cfg(steps=long).compiles_body("cuda:0") and not cfg(steps=long - 1).compiles_body("cuda")
    assert not cfg(steps=long).compiles_body("cpu")  # little to gain on CPUs, minutes to pay
    assert cfg(compile="on").compiles_body("cpu") and not cfg(steps=long, compile="off").compiles_body("cuda")
    # a job saved before the setting existed loads as auto
    old = {k: v for k, v in cfg().to_dict().items() if k != "compile"}
    assert TrainConfig.from_dict(old).compile == "auto"


def test_train_registers_model_with_lineage_and_metrics(tiny, tmp_path):
    result, rows = run(tiny, cfg(), tmp_path / "run")
    assert result.steps_done == 6 and not result.stopped
    assert [s for s, _ in train_losses(rows)] == [1, 2, 3, 4, 5, 6]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [3, 6]
    for row in rows:
        assert set(row) == {"step", "split", "loss", "lr", "grad_norm", "tokens_per_s"}
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows[0]["lr"] == 0.0 and train_rows[1]["lr"] == pytest.approx(5e-4)  # warm-up
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in train_rows)
    record = result.model
    assert record.name == "t1-ft" and record.parent == "t1" and record.dataset == "words"
    assert record.source == "fine-tuned" and not record.adapter
    assert record.meta["final_train_loss"] == pytest.approx(result.final_train_loss)
    assert record.meta["final_val_loss"] == pytest.approx(result.final_val_loss)
    assert record.meta["settings"]["steps"] == 6
    assert tiny.registry.get_model("t1-ft").sha256 != tiny.registry.get_model("t1").sha256
    # the registered folder loads with plain transformers
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(record.path, use_safetensors=True)


def test_loss_decreases_on_text(tiny, tmp_path):
    result, rows = run(tiny, cfg(steps=30, lr=3e-3, eval_every=0, warmup=0, schedule="constant"),
                       tmp_path / "run", register=False)
    losses = [loss for _, loss in train_losses(rows)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert result.model is None


def test_exact_resume_reproduces_uninterrupted_run(tiny, tmp_path):
    _, full_rows = run(tiny, cfg(out="a", save_every=2), tmp_path / "a")
    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    stopped, first_rows = run(tiny, cfg(out="b", save_every=2), tmp_path / "b", should_stop=stop_after_three)
    assert stopped.stopped and stopped.steps_done == 3 and stopped.model is None
    assert stopped.last_checkpoint.endswith("step-3")
    assert tiny.registry.find_model("b") is None
    resumed, rest_rows = run(tiny, cfg(out="b", save_every=2), tmp_path / "b", resume=True)
    assert resumed.steps_done == 6 and resumed.model is not None
    combined = train_losses(first_rows) + train_losses(rest_rows)
    expected = train_losses(full_rows)
    assert [s for s, _ in combined] == [s for s, _ in expected]
    for (_, got), (_, want) in zip(combined, expected):
        assert abs(got - want) <= 1e-6
    assert resumed.final_val_loss == pytest.approx(full_rows[-1]["loss"], abs=1e-6)


def test_checkpoints_are_complete_and_pruned(tiny, tmp_path):
    from workbench.core.training.checkpoints import COMPLETE, latest_complete_checkpoint, list_checkpoints

    run_dir = tmp_path / "run"
    run(tiny, cfg(steps=6, save_every=1, keep_checkpoints=2, eval_every=0), run_dir, register=False)
    found = list_checkpoints(run_dir)
    assert [step for step, _ in found] == [5, 6]
    latest = latest_complete_checkpoint(run_dir)
    assert latest.name == "step-6"
    names = {p.name for p in latest.iterdir()}
    assert {"model", "optimizer.pt", "rng.pt", "state.json", COMPLETE} <= names
    assert (latest / "model" / "model.safetensors").is_file()
    state = json.loads((latest / "state.json").read_text())
    assert state["step"] == 6 and state["sampler"]["batches_drawn"] == 6
    assert not list((run_dir / "checkpoints").glob(".step-*"))  # no temporary folders left


def test_checkpoint_write_is_atomic(tmp_path):
    from workbench.core.training.checkpoints import latest_complete_checkpoint, write_checkpoint

    write_checkpoint(tmp_path, 1, lambda f: (f / "a.txt").write_text("one"), keep=3)

    def crash(folder):
        (folder / "a.txt").write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_checkpoint(tmp_path, 2, crash, keep=3)
    assert latest_complete_checkpoint(tmp_path).name == "step-1"
    assert not (tmp_path / "checkpoints" / "step-2").exists()
    # a folder without the marker (a crash between rename and marker cannot happen, but a copied or
    # truncated folder can) is never picked
    (tmp_path / "checkpoints" / "step-9").mkdir()
    assert latest_complete_checkpoint(tmp_path).name == "step-1"
    # stale temporary folders are swept by the next save
    (tmp_path / "checkpoints" / ".step-3.tmp-123").mkdir()
    write_checkpoint(tmp_path, 3, lambda f: (f / "a.txt").write_text("three"), keep=3)
    assert not (tmp_path / "checkpoints" / ".step-3.tmp-123").exists()
    assert latest_complete_checkpoint(tmp_path).name == "step-3"


def test_refuses_to_overwrite_a_run_without_resume(tiny, tmp_path):
    run(tiny, cfg(steps=2, eval_every=0), tmp_path / "run", register=False)
    with pytest.raises(WorkbenchError, match="--resume"):
        run(tiny, cfg(steps=2, eval_every=0), tmp_path / "run", register=False)


def test_register_result_from_a_stopped_run(tiny, tmp_path):
    from workbench.core.training.checkpoints import register_result

    config = cfg(steps=6, eval_every=0)
    result, _ = run(tiny, config, tmp_path / "run", should_stop=iter([False, False, True]).__next__)
    assert result.stopped and result.steps_done == 2
    record = register_result(tiny, config, tmp_path / "run", job_id=None)
    assert record.parent == "t1" and record.meta["steps"] == 2 and record.meta["stopped_early"]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_schedule_shapes(schedule):
    from workbench.core.training.schedule import lr_factor

    values = [lr_factor(schedule, s, 100, 10) for s in range(100)]
    assert values[0] == 0.0 and values[5] == pytest.approx(0.5) and values[10] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(values[:10], values[1:11]))
    tail = values[10:]
    if schedule == "constant":
        assert all(v == 1.0 for v in tail)
    else:
        assert all(b <= a for a, b in zip(tail, tail[1:])) and tail[-1] < 0.05
        if schedule == "cosine":
            assert values[55] == pytest.approx(0.5)  # half-way through the decay
        else:
            assert values[55] == pytest.approx(0.5)


def test_schedule_matches_transformers():
    import torch
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    from workbench.core.training.schedule import lr_factor

    for name, make in (("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt, 7, 40)
        for step in range(40):
            assert opt.param_groups[0]["lr"] == pytest.approx(lr_factor(name, step, 40, 7))
            opt.step()
            sched.step()


@pytest.mark.parametrize("changes, message", [
    ({"seq": 65}, "longer than t1's context"),
    ({"batch": 0}, "--batch must be"),
    ({"steps": 0}, "--steps must be"),
    ({"objective": "bogus"}, "unknown objective"),
    ({"method": "bogus"}, "unknown method"),
    ({"schedule": "step"}, "unknown schedule"),
    ({"precision": "fp8"}, "unknown precision"),
    ({"lr": 0}, "--lr must be positive"),
    ({"dataset": None}, "needs a dataset"),
    ({"dataset": "nope"}, "unknown dataset"),
    ({"base_model": "nope"}, "unknown model"),
    ({"out": "t1"}, "must differ"),
    ({"out": "../evil"}, "invalid output model name"),
    ({"objective": "instruct"}, "needs a instructions dataset"),
    ({"objective": "kl-letter", "dataset": None, "letter": "xy"}, "single visible character"),
    ({"objective": "kl-letter", "dataset": None, "letter": "\u9f98"}, "no token"),
    ({"merge": True}, "--merge only applies"),
    ({"freeze": ["*.attn.*"], "method": "lora"}, "does not combine"),
    ({"device": "cuda:3"}, "CUDA is not available"),
])
def test_settings_are_refused_up_front(tiny, tmp_path, changes, message):
    from workbench.core.training.loop import train

    with pytest.raises(WorkbenchError, match=message) as caught:
        train(tiny, cfg(**changes), tmp_path / "run", progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()  # no work started


def test_refuses_empty_or_too_short_dataset(tiny, tmp_path):
    from workbench.core import data

    path = tmp_path / "short.txt"
    path.write_text("just a few words here.\n")
    data.add_dataset(tiny, "short", path)
    with pytest.raises(WorkbenchError, match="fewer than one block"):
        run(tiny, cfg(dataset="short"), tmp_path / "run")


def test_ddp_two_processes_match_one_process(tiny, tmp_path):
    """torchrun with 2 processes x batch/2 takes the same steps as 1 process x batch (gloo on CPU)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import json, os, sys\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from workbench.core.context import open_workspace\n"
        "from workbench.core.training import TrainConfig\n"
        "from workbench.core.training.loop import train\n"
        "ctx = open_workspace(sys.argv[1], starter=False)\n"
        "rows = []\n"
        "config = TrainConfig.from_dict(json.loads(sys.argv[2]))\n"
        "result = train(ctx, config, sys.argv[3], on_metrics=rows.extend, progress=False)\n"
        "if os.environ.get('RANK', '0') == '0':\n"
        "    print('RESULT ' + json.dumps({'rows': rows, 'model': result.model.name if result.model else None}))\n"
        "else:\n"
        "    assert result.model is None and rows == []\n"
    )
    home = str(tiny.ws.home)

    def launch(out: str, nproc: int) -> dict:
        config = cfg(out=out, steps=3, eval_every=3, save_every=2).to_dict()
        prefix = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone"] \
            if nproc > 1 else [sys.executable]
        done = subprocess.run([*prefix, str(script), home, json.dumps(config), str(tmp_path / out)],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
        return json.loads(line[len("RESULT "):])

    one, two = launch("one", 1), launch("two", 2)
    assert two["model"] == "two" and tiny.registry.get_model("two").parent == "t1"
    assert [(r["step"], r["split"]) for r in one["rows"]] == [(r["step"], r["split"]) for r in two["rows"]]
    for a, b in zip(one["rows"], two["rows"]):
        assert abs(a["loss"] - b["loss"]) < 1e-5
        if a["grad_norm"] is not None:
            assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4
