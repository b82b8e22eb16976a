"""Style attribution tells a model tuned on Alice from one tuned on Poe (both trained by the training engine)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, corpora):
    from workbench.core.context import open_workspace
    from workbench.core.data import add_dataset
    from workbench.core.models import ModelShape, create_model
    from workbench.core.training.config import TrainConfig
    from workbench.core.training.loop import train

    home = tmp_path_factory.mktemp("style-ws")
    ctx = open_workspace(home, starter=False)
    create_model(ctx.ws, ctx.registry, "base", "gpt2", ModelShape(layers=1, hidden=64, heads=2, context=64), seed=0)
    for name in ("alice", "poe"):
        add_dataset(ctx, name, corpora / f"{name}.txt")
        config = TrainConfig(base_model="base", dataset=name, out=f"{name}-tuned", steps=30, batch=8, seq=64,
                             lr=3e-3, warmup=5, eval_every=0, precision="fp32", seed=0)
        result = train(ctx, config, home / "runs" / name, progress=False)
        assert result.model is not None and result.model.name == f"{name}-tuned"
    yield ctx
    ctx.registry.close()


def test_style_matrix_tells_alice_from_poe(tuned):
    from workbench.core.evaluation.service import EvalRequest, evaluate

    # sampled continuations: a model's own samples are, in expectation, least surprising to itself
    # (Gibbs' inequality); greedy text from models this small degenerates into the same blank lines.
    request = EvalRequest(metrics=["style"], data=["alice", "poe"], style_prompts=3, style_tokens=16,
                          generation={"do_sample": True, "seed": 0})
    report = evaluate(tuned, ["alice-tuned", "poe-tuned"], request)
    style = report["style"]
    (aa, ap), (pa, pp) = style["perplexity"]  # [model][dataset]
    assert style["models"] == ["alice-tuned", "poe-tuned"] and style["datasets"] == ["alice", "poe"]
    assert aa < pa, f"Alice's text: alice-tuned {aa:.1f} vs poe-tuned {pa:.1f}"
    assert pp < ap, f"Poe's text: poe-tuned {pp:.1f} vs alice-tuned {ap:.1f}"
    assert style["best_model_per_dataset"] == {"alice": "alice-tuned", "poe": "poe-tuned"}
    # sample attribution: 2 generators x (2 datasets x 3 prompts) samples, each attributed once
    assert [sum(row) for row in style["confusion"]] == [6, 6]
    assert len(style["samples"]) == 12 and style["accuracy"] >= 0.75
    for sample in style["samples"]:
        assert sample["attributed"] == min(sample["nll"], key=sample["nll"].get)
    # the cells are ordinary perplexity evaluations, stored and reused; the whole request is cached
    assert {e.metric for e in tuned.registry.evaluations(model="alice-tuned")} >= {"perplexity",
                                                                                  "style_self_attribution"}
    again = evaluate(tuned, ["alice-tuned", "poe-tuned"], request)
    assert again["style"]["cached"] is True and again["style"]["perplexity"] == style["perplexity"]
