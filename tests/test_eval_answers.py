"""Token F1 and exact match (SQuAD normalisation), per sample and through `workbench eval`."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main
from workbench.core.evaluation.text_metrics import exact_match, normalize_answer, token_f1


@pytest.mark.parametrize("text, normal", [
    ("The Cat sat.", "cat sat"),
    ("  an   apple, a PEAR!  ", "apple pear"),
    ("Theatre then", "theatre then"),  # only whole-word articles go
])
def test_squad_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_token_f1_and_exact_match_on_known_pairs():
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    # hyp "red cat sat" vs ref "cat sat down": 2 common, precision 2/3, recall 2/3
    assert token_f1("the red cat sat", "a cat sat down") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("a", "cat") == 0.0


def test_eval_reports_f1_and_exact_match_per_sample(ctx, tmp_path, capsys):
    from workbench.core.generation import GenerationSettings, generate
    from workbench.core.models import ModelCache

    loaded = ModelCache().get(ctx.registry, "tiny-neo")
    first = generate(loaded, ["Alice said"], GenerationSettings(max_new_tokens=6))[0].text.strip()
    refs = tmp_path / "refs.jsonl"
    rows = [{"prompt": "Alice said", "reference": f"The {first.upper()}"},  # equal after normalisation
            {"prompt": "The Queen", "reference": "zzzz qqqq"}]
    refs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["--home", str(ctx.ws.home), "eval", "tiny-neo", "--refs", str(refs), "--metrics", "f1,em",
                 "--max-new-tokens", "6", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)["results"][0]
    samples = report["samples"]["refs"]
    assert [s["exact_match"] for s in samples] == [1.0, 0.0]
    assert samples[0]["f1"] == 1.0 and samples[1]["f1"] == token_f1(samples[1]["hypothesis"], "zzzz qqqq")
    assert report["metrics"]["exact_match"] == 0.5
    assert report["metrics"]["f1"] == pytest.approx((1.0 + samples[1]["f1"]) / 2)
    stored = {e.metric for e in ctx.registry.evaluations(model="tiny-neo")}
    assert {"f1", "exact_match"} <= stored
