"""Recipes: parsing and its one-line errors, a recipe run end to end on tiny models (real jobs, real
registry), a failed step that keeps the steps before it, and `train --config` precedence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.core.recipes.spec import list_recipes, load_recipe, parse_recipe
from test_training import synthetic_text

GOOD = """
name: tiny
steps:
  - {id: t, kind: train, with: {model: tiny-neo, out: t1, objective: kl-letter, steps: 5}, quick: {steps: 2}}
figures:
  - {name: loss, value: t.final_train_loss, seed: 1.0, match: at-most}
"""


@pytest.mark.parametrize("text, message", [
    ("name: [", "not valid YAML at line 1"),
    ("- just a list", "expected a mapping"),
    ("name: x\nsteps: []", "'steps' must be a non-empty list"),
    ("name: x\nsteps:\n  - {kind: trian}", "step 1: unknown kind 'trian'; choose one of data, model, train"),
    ("name: x\nsteps:\n  - {kind: train, with: {model: tiny-neo}}", "step 'train-1' (train): a train step needs 'out'"),
    ("name: x\nsteps:\n  - {kind: train, with: {model: a, out: b, stepz: 3}}", "unknown training setting 'stepz'"),
    ("name: x\nsteps:\n  - {kind: train, with: {model: a, out: b, data: d}, quick: {steps: 0}}",
     "step 'train-1' (train) under --quick: --steps must be an integer of at least 1"),
    ("name: x\nsteps:\n  - {kind: eval, with: {models: [a], metrics: [bleu]}}", "'metrics' must be a list of"),
    ("name: x\nsteps:\n  - {kind: dialogue, with: {models: [a], opening: hi}}", "exactly two 'models'"),
    ("name: x\nsteps:\n  - {kind: generate, with: {models: a, prompts: [hi], settings: {top_p: 2}}}",
     "top_p must be in (0, 1]"),
    ("name: x\nsteps:\n  - {id: a, kind: data, with: {books: [alice]}}\n  - {id: a, kind: data, with: {books: [poe]}}",
     "two steps have the id 'a'"),
    ("name: x\nsteps:\n  - {id: a, kind: data, with: {books: [alice]}}\nfigures:\n  - {name: f, value: b.x}",
     "value 'b.x' names no step"),
    ("name: x\nsteps:\n  - {id: a, kind: data, with: {books: [alice]}}\n"
     "figures:\n  - {name: f, value: a.x, match: at-least}",
     "needs the original's figure"),
    ("name: x\ncolour: red\nsteps:\n  - {kind: data, with: {books: [alice]}}", "unknown key 'colour'"),
])
def test_bad_recipes_fail_with_one_line_naming_the_file(text, message):
    with pytest.raises(WorkbenchError) as error:
        parse_recipe(text, "mine.yaml")
    assert message in str(error.value) and "mine.yaml" in str(error.value) and "\n" not in str(error.value)


def test_quick_overrides_and_shipped_recipes_parse(ctx):
    recipe = parse_recipe(GOOD, "good.yaml")
    assert recipe.steps[0].settings(False)["steps"] == 5 and recipe.steps[0].settings(True)["steps"] == 2
    skipping = parse_recipe(GOOD.replace("quick: {steps: 2}", "quick: {skip: true}"), "skip.yaml").steps[0]
    assert skipping.skipped(True) and not skipping.skipped(False) and "skip" not in skipping.settings(True)
    recipes, problems = list_recipes(ctx)
    assert problems == []
    assert {"like-x", "alice-vs-poe", "instruct", "generation"} <= {r.name for r in recipes}
    like_x = load_recipe(ctx, "like-x")
    assert like_x.origin == "builtin" and like_x.figures[0].seed == 0.94
    folder = Path(ctx.ws.home) / "recipes"
    folder.mkdir()
    (folder / "like-x.yaml").write_text(GOOD)  # the workspace's own recipe wins over the shipped one
    assert load_recipe(ctx, "like-x").origin == "workspace"
    with pytest.raises(WorkbenchError, match="no recipe named 'nope'"):
        load_recipe(ctx, "nope")


TINY_RECIPE = """
name: tiny-tour
steps:
  - {id: data, kind: data, with: {books: [words]}}
  - {id: train, kind: train, with: {model: tiny-neo, data: words, out: words-neo, steps: 40, batch: 2, seq: 16,
     lr: 0.005, warmup: 0, eval-every: 0}, quick: {steps: 2}}
  - {id: ppl, kind: eval, with: {models: [tiny-neo, words-neo], metrics: [ppl], data: [words], context: 64,
     own: {words-neo: words}}, quick: {limit_chars: 2000}}
  - {id: slow, kind: generate, with: {models: [tiny-neo], prompts: [never]}, quick: {skip: true}}
  - {id: xr, kind: eval, with: {models: [words-neo], metrics: [x-ratio], tokens: 6, samples: 1,
     prompt_tokens: [2, 4], prompts: ["the cat sat"]}}
  - {id: gen, kind: generate, with: {models: [words-neo], prompts: ["the cat"], settings: [
     {label: greedy, max_new_tokens: 5}, {label: hot, max_new_tokens: 5, do_sample: true, temperature: 1.5, seed: 1}]}}
  - {id: talk, kind: dialogue, with: {models: [tiny-neo, words-neo], opening: "hello there", turns: 2,
     settings: {max_new_tokens: 5}}}
figures:
  - {name: steps done, value: train.steps, seed: 2, match: equal}
  - {name: own lower, value: ppl.own_lower.words-neo, seed: true, match: equal}
  - {name: ppl of words-neo, value: ppl.ppl.words-neo.words, unit: ppl}
  - {name: lowest x ratio, value: xr.x_ratio.words-neo.lowest, seed: 0.94, match: at-least}
"""


def _cli(home, *args, corpora=None):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    if corpora:
        env["WORKBENCH_CORPORA"] = str(corpora)
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_recipe_runs_end_to_end_and_lands_in_the_registry(home, tmp_path):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "words.txt").write_text(synthetic_text(3000))
    (home / "recipes").mkdir()
    (home / "recipes" / "tiny-tour.yaml").write_text(TINY_RECIPE)
    result = _cli(home, "recipe", "run", "tiny-tour", "--quick", "--json", corpora=corpora)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "completed" and report["quick"] is True
    assert "[2/7] train (train)" in result.stderr and "added from" in result.stderr  # progress
    figures = {f["name"]: f for f in report["figures"]}
    assert figures["steps done"]["measured"] == 2 and figures["steps done"]["match"] is True
    assert isinstance(figures["ppl of words-neo"]["measured"], float) and figures["ppl of words-neo"]["match"] is None
    assert figures["lowest x ratio"]["seed"] == 0.94 and figures["lowest x ratio"]["match"] in (True, False)
    assert report["settings"]["train"]["steps"] == 2
    assert [s["status"] for s in report["steps"]][2:4] == ["done", "skipped (--quick)"]
    assert Path(report["report_path"]).read_text().startswith("# Recipe: tiny-tour (quick)")

    from workbench.core.context import open_workspace

    ctx = open_workspace(home)
    model = ctx.registry.get_model("words-neo")
    assert model.parent == "tiny-neo" and model.dataset == "words" and model.job_id is not None
    assert ctx.registry.get_job(model.job_id).status == "completed"
    metrics = {e.metric for e in ctx.registry.evaluations(model="words-neo")}
    assert {"perplexity", "x_ratio"} <= metrics
    kinds = sorted(s.kind for s in ctx.registry.list_sessions())
    assert kinds == ["dialogue", "generation"]
    gen = next(s for s in report["steps"] if s["id"] == "gen")["result"]
    assert [o["settings"] for o in gen["outputs"]] == ["greedy", "hot"]
    ctx.registry.close()

    again = _cli(home, "recipe", "run", "tiny-tour", "--quick", "--json", corpora=corpora)  # reuses the model
    assert again.returncode == 0, again.stderr
    assert "already trained with these settings" in again.stderr


def test_failed_step_stops_with_one_line_and_keeps_earlier_steps(ctx, tmp_path, monkeypatch):
    from workbench.core.recipes.runner import run_recipe

    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "words.txt").write_text(synthetic_text(2000))
    monkeypatch.setenv("WORKBENCH_CORPORA", str(corpora))
    recipe = parse_recipe("""
name: broken
steps:
  - {id: data, kind: data, with: {books: [words]}}
  - {id: train, kind: train, with: {model: tiny-neo, data: nowhere, out: n1, steps: 2}}
  - {id: gen, kind: generate, with: {models: [tiny-neo], prompts: [hi]}}
""", "broken.yaml")
    events = []
    report = run_recipe(ctx, recipe, on_event=events.append)
    assert report["status"] == "failed"
    assert report["failure"]["step"] == "train" and "nowhere" in report["failure"]["error"]
    assert [s["status"] for s in report["steps"]] == ["done", "failed", "not run"]
    assert ctx.registry.find_dataset("words") is not None  # the first step's work is kept
    assert [e.kind for e in events if e.kind in ("start", "done", "failed")] == ["start", "done", "start", "failed"]
    assert "failed at step 2 'train'" in Path(report["report_path"]).read_text()

    code = main(["--home", str(ctx.ws.home), "recipe", "run", str(tmp_path / "none.yaml")])
    assert code == 1


def test_recipe_cli_errors_are_one_line(home, capsys):
    code = main(["--home", str(home), "recipe", "show", "nope"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no recipe named 'nope'" in err


def test_book_missing_everywhere_says_how_to_get_it(ctx, tmp_path, monkeypatch):
    from workbench.core.recipes.books import ensure_book

    monkeypatch.setenv("WORKBENCH_CORPORA", str(tmp_path))
    with pytest.raises(WorkbenchError, match="run `workbench data get alice`"):
        ensure_book(ctx, "alice")


# ---------------------------------------------------------------- train --config


def test_train_config_file_with_flags_winning_and_a_model_card(home, tmp_path, capsys):
    from workbench.core.model_card import read_model_card

    config = tmp_path / "run.yaml"
    config.write_text("model: tiny-neo\nout: from-file\nobjective: kl-letter\nkl-positions: final\n"
                      "steps: 5\nbatch: 2\nseq: 8\nlr: 0.002\neval-every: 0\n")
    code = main(["--home", str(home), "train", "--config", str(config), "--steps", "2", "--out", "from-flags",
                 "--no-progress", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    settings = data["settings"]
    assert settings["steps"] == 2 and data["model"] == "from-flags"          # the command line wins
    assert settings["kl_positions"] == "final" and settings["lr"] == 0.002  # the file fills the rest
    assert settings["batch"] == 2 and settings["schedule"] == "cosine"     # defaults where neither says
    card = read_model_card(Path(data["path"]))
    assert card["settings"]["steps"] == 2 and card["settings"]["model"] == "tiny-neo"
    assert card["settings"]["kl-positions"] == "final" and card["base_model"] == "tiny-neo"


@pytest.mark.parametrize("content, message", [
    ("model: tiny-neo\nout: x\nstepz: 3\n", "unknown training setting 'stepz'"),
    ("model: [tiny-neo\n", "not valid YAML"),
    ("- a list\n", "expected a mapping"),
])
def test_train_config_file_errors_are_one_line(home, tmp_path, capsys, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    code = main(["--home", str(home), "train", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_train_without_model_is_bad_usage(home, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(home), "train", "--out", "x"])
    assert exit_info.value.code == 2 and "--model is required" in capsys.readouterr().err
