"""BLEU/ROUGE against sacrebleu and rouge-score called directly; X-token ratio and its base rate."""

from __future__ import annotations

import json

import pytest

from workbench.core.errors import WorkbenchError

REFS = [
    {"prompt": "Alice was beginning to get very", "reference": "tired of sitting by her sister on the bank"},
    {"prompt": "The Rabbit took a watch out of", "reference": "its waistcoat-pocket and looked at it"},
    {"prompt": "Once upon a midnight dreary, while I", "reference": "pondered, weak and weary"},
]


@pytest.fixture
def tiny(ctx):
    from workbench.core.models import ModelCache, ModelShape, create_model

    create_model(ctx.ws, ctx.registry, "tiny", "gpt2", ModelShape(layers=1, hidden=32, heads=2, context=64), seed=3)
    return ctx, ModelCache().get(ctx.registry, "tiny", device="cpu")


def test_bleu_rouge_equal_direct_library_calls(tiny, tmp_path):
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    from workbench.core.evaluation.service import EvalRequest, evaluate
    from workbench.core.generation import GenerationSettings, generate

    ctx, loaded = tiny
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps(r) + "\n" for r in REFS))
    request = EvalRequest(metrics=["bleu", "rouge"], refs=str(refs), generation={"max_new_tokens": 12},
                          batch_size=2)
    stages, progress = [], []
    report = evaluate(ctx, ["tiny"], request, on_stage=stages.append,
                      on_progress=lambda done, total: progress.append((done, total)))["results"][0]
    assert stages == ["generating 3 hypotheses with tiny"]  # what the TUI's progress bar is told
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)
    samples = report["samples"]["refs"]
    hyps = [s["hypothesis"] for s in samples]
    refs_text = [s["reference"] for s in samples]
    assert refs_text == [r["reference"] for r in REFS]
    # the stored hypotheses are the model's greedy continuations
    direct = generate(loaded, [r["prompt"] for r in REFS], GenerationSettings(max_new_tokens=12))
    assert hyps == [d.text.strip() for d in direct]

    metric = BLEU()
    expected = metric.corpus_score(hyps, [refs_text])
    assert report["metrics"]["bleu"] == pytest.approx(expected.score, abs=1e-9)
    assert report["metrics"]["bleu_signature"] == str(metric.get_signature())
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        mean = sum(scorer.score(r, h)[key].fmeasure for r, h in zip(refs_text, hyps)) / len(hyps)
        assert report["metrics"][key] == pytest.approx(mean, abs=1e-12)


def test_bleu_rouge_helpers_on_known_pairs():
    from sacrebleu.metrics import BLEU

    from workbench.core.evaluation.text_metrics import bleu, rouge

    hyps = ["the cat sat on the mat", "a quick brown fox jumps"]
    refs = ["the cat sat on the red mat", "the quick brown fox jumped"]
    score, signature = bleu(hyps, refs)
    assert score == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)
    assert signature.startswith("nrefs:1|")
    perfect = rouge(refs, refs)
    assert all(v == pytest.approx(1.0) for v in perfect.values())
    assert 0 < rouge(hyps, refs)["rouge1"] < 1


def test_references_file_errors(tmp_path):
    from workbench.core.evaluation.text_metrics import read_references

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "reference": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(WorkbenchError, match=r"bad.jsonl:2"):
        read_references(bad)
    bad.write_text("not json\n")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        read_references(bad)
    with pytest.raises(WorkbenchError, match="cannot read"):
        read_references(tmp_path / "missing.jsonl")


def test_vocabulary_base_rate_gpt2(tiny):
    from workbench.core.evaluation.x_ratio import base_rate

    _, loaded = tiny
    rate = base_rate(loaded.tokenizer, "x")
    assert (rate["tokens"], rate["vocab"]) == (985, 50257)
    assert round(rate["rate"] * 100, 2) == 1.96
    assert base_rate(loaded.tokenizer, "X")["tokens"] == 985  # case-insensitive


def test_x_ratio_counts_each_generated_token(tiny):
    from workbench.core.evaluation.x_ratio import x_ratio

    _, loaded = tiny
    result = x_ratio(loaded, letter="e", tokens=20, samples=3, seed=5)
    assert len(result.samples) == 3
    for sample in result.samples:
        assert sample.tokens == 20 == len(sample.token_ids)
        expected = sum("e" in loaded.tokenizer.decode([t]).lower() for t in sample.token_ids)
        assert sample.hits == expected and sample.ratio == pytest.approx(expected / 20)
    assert result.ratio == pytest.approx(sum(s.hits for s in result.samples) / 60)
    again = x_ratio(loaded, letter="e", tokens=20, samples=3, seed=5)
    assert [s.prompt for s in again.samples] == [s.prompt for s in result.samples]  # seeded prompts
    other = x_ratio(loaded, letter="e", tokens=20, samples=3, seed=6)
    assert [s.prompt for s in other.samples] != [s.prompt for s in result.samples]
    given = x_ratio(loaded, tokens=5, prompts=["Hello there", "The fox"])
    assert [s.prompt for s in given.samples] == ["Hello there", "The fox"]
    with pytest.raises(WorkbenchError, match="below the context"):
        x_ratio(loaded, tokens=64)
    with pytest.raises(WorkbenchError, match="single character"):
        x_ratio(loaded, letter="xy")
