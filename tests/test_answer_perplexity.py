"""Answer-only perplexity (the instruct recipe's before/after figure): the mean NLL of exactly the
assistant tokens, the same number as transformers' own loss with every other label set to -100."""

from __future__ import annotations

import math

import pytest

RECORDS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Blue."},
                  {"role": "user", "content": "Another?"},
                  {"role": "assistant", "content": "Green."}]},
]


def test_answer_perplexity_scores_the_assistant_tokens_only(ctx):
    import torch

    from workbench.core.evaluation.answer_perplexity import answer_perplexity
    from workbench.core.models import ModelCache
    from workbench.core.templates import assistant_mask, instruct_format

    loaded = ModelCache(max_models=1).get(ctx.registry, "tiny-neo")
    folder = ctx.registry.get_model("tiny-neo").path
    result = answer_perplexity(loaded, RECORDS, folder)

    fmt = instruct_format(loaded.tokenizer, folder)  # tiny-neo has no template: the default one
    nll, count = 0.0, 0
    for record in RECORDS:
        masked = assistant_mask(loaded.tokenizer, record["messages"], fmt)
        labels = [t if m else -100 for t, m in zip(masked.ids, masked.mask)]
        with torch.no_grad():
            out = loaded.model(input_ids=torch.tensor([masked.ids]), labels=torch.tensor([labels]))
        n = sum(1 for m in masked.mask[1:] if m)
        nll += float(out.loss) * n
        count += n
    assert result["tokens"] == count and result["records"] == 2
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
