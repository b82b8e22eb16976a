"""Perplexity of the answers only: each held-out instruction record rendered with the model's chat
template (the default one for a model that has none, as instruction tuning renders it), scored on the
tokens of the assistant turns given everything before them. This is what instruction tuning trains
(loss on responses only), so before and after are compared on the same tokens."""

from __future__ import annotations

import math

from ..errors import WorkbenchError


def answer_perplexity(loaded, records: list[dict], folder) -> dict:
    """{"perplexity", "tokens", "records"} over the assistant tokens of `records` ({"messages": [...]});
    a record longer than the model's context is cut to it."""
    import torch

    from ..templates import assistant_mask, instruct_format

    fmt = instruct_format(loaded.tokenizer, folder)
    total_nll, counted, used = 0.0, 0, 0
    model = loaded.model
    with torch.inference_mode():
        for record in records:
            masked = assistant_mask(loaded.tokenizer, record["messages"], fmt)
            ids, mask = masked.ids[: loaded.context_length], masked.mask[: loaded.context_length]
            targets = [i for i in range(1, len(ids)) if mask[i]]
            if not targets:
                continue
            inputs = torch.tensor([ids], device=loaded.device)
            logits = model(input_ids=inputs).logits[0, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            picked = torch.tensor([t - 1 for t in targets], device=logprobs.device)
            wanted = torch.tensor([ids[t] for t in targets], device=logprobs.device)
            total_nll -= float(logprobs[picked, wanted].sum())
            counted += len(targets)
            used += 1
    if not counted:
        raise WorkbenchError("no assistant tokens to score in these records")
    return {"perplexity": math.exp(total_nll / counted), "tokens": counted, "records": used}
