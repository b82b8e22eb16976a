"""`workbench eval`: JSON report, registry storage and caching by hash, gates (exit 3), JUnit, compare, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from workbench.cli import main

TEXT = "\n".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog while Alice watches the rabbit hole."
    for i in range(120)
) + "\n"


@pytest.fixture
def ws(ctx, tmp_path):
    """A workspace with two tiny models and a small text dataset."""
    from workbench.core.data import add_dataset
    from workbench.core.models import ModelShape, create_model

    for name, seed in (("m1", 1), ("m2", 2)):
        create_model(ctx.ws, ctx.registry, name, "gpt2", ModelShape(layers=1, hidden=32, heads=2, context=64),
                     seed=seed)
    source = tmp_path / "lines.txt"
    source.write_text(TEXT)
    add_dataset(ctx, "lines", source)
    return ctx


def run(capsys, ws, *argv):
    code = main(["--home", str(ws.ws.home), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ppl_report_stored_and_cached(ws, capsys):
    from workbench.core.data import read_split_text
    from workbench.core.evaluation.runner import sha256_text

    code, out, err = run(capsys, ws, "eval", "m1", "--data", "lines", "--metrics", "ppl", "--json")
    assert code == 0, err
    report = json.loads(out)
    result = report["results"][0]
    assert result["model"] == "m1" and result["cached"] is False
    assert set(result["metrics"]) == {"perplexity", "bits_per_byte", "word_perplexity"}
    assert result["settings"]["ppl"]["context"] == 64 and result["settings"]["ppl"]["target"] == "lines:test"
    rows = ws.registry.evaluations(model="m1")
    assert {r.metric for r in rows} == {"perplexity", "bits_per_byte", "word_perplexity"}
    record = ws.registry.get_model("m1")
    assert all(r.model_sha256 == record.sha256 for r in rows)
    assert all(r.data_sha256 == sha256_text(read_split_text(ws, "lines", "test")) for r in rows)
    assert all(r.settings["context"] == 64 for r in rows)

    code, out, err = run(capsys, ws, "eval", "m1", "--data", "lines", "--json")
    again = json.loads(out)["results"][0]
    assert code == 0 and again["cached"] is True and "cached" in err
    assert again["metrics"] == result["metrics"]
    assert len(ws.registry.evaluations(model="m1")) == 3  # nothing recomputed or stored twice

    # the same context spelled out hits the same cache entry; another stride does not
    code, out, _ = run(capsys, ws, "eval", "m1", "--data", "lines", "--context", "64", "--json")
    assert json.loads(out)["results"][0]["cached"] is True
    code, out, _ = run(capsys, ws, "eval", "m1", "--data", "lines", "--stride", "16", "--json")
    strided = json.loads(out)["results"][0]
    assert strided["cached"] is False and strided["metrics"]["perplexity"] != result["metrics"]["perplexity"]

    code, out, err = run(capsys, ws, "eval", "m1", "--data", "lines", "--fresh", "--json")
    fresh = json.loads(out)["results"][0]
    assert fresh["cached"] is False and "cached" not in err
    assert fresh["metrics"]["perplexity"] == pytest.approx(result["metrics"]["perplexity"], rel=1e-9)


def test_gates_junit_and_exit_code(ws, capsys, tmp_path):
    junit = tmp_path / "report.xml"
    output = tmp_path / "report.json"
    code, out, err = run(capsys, ws, "eval", "m1", "--data", "lines", "--fail-if", "perplexity<1",
                         "--fail-if", "bits_per_byte>=0", "--junit", str(junit), "--output", str(output))
    assert code == 3
    assert "gate failed: fail-if bits_per_byte>=0" in err and "perplexity<1" not in err.split("gate failed")[-1]
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == "5" and suite.get("failures") == "1"  # 3 metrics + 2 gates
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["fail-if bits_per_byte>=0"]
    report = json.loads(output.read_text())
    assert report["passed"] is False and [g["passed"] for g in report["gates"]] == [True, False]

    code, _, err = run(capsys, ws, "eval", "m1", "--data", "lines", "--fail-if", "perplexity>1e9")
    assert code == 0, err

    for bad in (["--fail-if", "perplexity~3"], ["--fail-if", "bleu>3"], ["--metrics", "nope"]):
        code, _, err = run(capsys, ws, "eval", "m1", "--data", "lines", *bad)
        assert code == 1 and err.startswith("workbench: error:") and "Traceback" not in err


def test_baseline_regression_gate(ws, capsys):
    code, out, _ = run(capsys, ws, "eval", "m1", "m2", "--data", "lines", "--json")
    ppl = {r["model"]: r["metrics"]["perplexity"] for r in json.loads(out)["results"]}
    worse, better = sorted(ppl, key=ppl.get, reverse=True)
    change = (ppl[worse] - ppl[better]) / ppl[better] * 100
    code, out, err = run(capsys, ws, "eval", worse, "--data", "lines", "--baseline", better,
                         "--max-regression", f"{change / 2:.6f}%", "--json")
    assert code == 3 and f"max-regression" in err and f"perplexity vs {better}" in err
    report = json.loads(out)
    assert [r["model"] for r in report["results"]] == [worse, better]
    assert report["results"][1]["baseline"] is True and report["results"][1]["cached"] is True
    code, _, err = run(capsys, ws, "eval", worse, "--data", "lines", "--baseline", better,
                       "--max-regression", f"{change * 2:.6f}%")
    assert code == 0, err
    # the better model never regresses against the worse one
    code, _, _ = run(capsys, ws, "eval", better, "--data", "lines", "--baseline", worse, "--max-regression", "0%")
    assert code == 0


def test_compare_and_list(ws, capsys):
    run(capsys, ws, "eval", "m1", "m2", "--data", "lines")
    code, out, _ = run(capsys, ws, "eval", "compare", "m1", "m2", "--json")
    assert code == 0
    data = json.loads(out)
    rows = {r["metric"]: r for r in data["rows"]}
    assert set(rows) == {"perplexity", "bits_per_byte", "word_perplexity"}
    row = rows["perplexity"]
    assert row["target"] == "lines:test" and row["same_settings"] is True
    assert row["delta"] == pytest.approx(row["b"] - row["a"])
    assert row["better"] == ("m1" if row["a"] < row["b"] else "m2")
    code, out, _ = run(capsys, ws, "eval", "compare", "m1", "m2")
    assert "perplexity" in out and "lines:test" in out
    code, out, _ = run(capsys, ws, "eval", "list", "m2", "--json")
    assert code == 0 and {r["model"] for r in json.loads(out)} == {"m2"} and len(json.loads(out)) == 3
    code, _, err = run(capsys, ws, "eval", "compare", "m1", "nope")
    assert code == 1 and "unknown model 'nope'" in err


def test_failed_gate_exit_code_in_a_real_process(ws):
    env = {**os.environ, "WORKBENCH_HOME": str(ws.ws.home)}
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "eval", "m1", "--data", "lines",
                           "--fail-if", "perplexity>2"], capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 3, done.stderr
    assert "gate failed: fail-if perplexity>2" in done.stderr
    assert "perplexity" in done.stdout and "Traceback" not in done.stderr
