"""Step-synchronous batched decoding: many sequences, one forward pass per token.

Sequences are left-padded into one batch with an attention mask and a KV cache; each row keeps its own
sampling settings (greedy, temperature, top_p, a seeded generator), stop strings and token limits. A row
that finishes (end token, stop string, max_tokens, or its client went away) leaves the batch and the cache
at once, so the remaining rows decode at the cost of their own count. Decoding a CPU model is bound by
reading its weights, so a forward pass over 8 rows costs little more than over one: that is where the
throughput of concurrent clients comes from.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("workbench.server")


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    min_tokens: int = 0


@dataclass
class Sequence:
    """One choice of one request: its prompt, its settings, what it has produced so far."""

    prompt_ids: list[int]
    params: SamplingParams
    index: int = 0  # the choice index within its request (n > 1)
    emit: Callable[["Sequence", str, str | None], None] = lambda seq, delta, finish: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    out_ids: list[int] = field(default_factory=list)
    text: str = ""       # decoded reply so far (stop strings cut away once found)
    sent: int = 0        # characters of `text` already emitted
    finish_reason: str | None = None
    generator: object = None

    def __post_init__(self) -> None:
        import torch

        seed = self.params.seed if self.params.seed is not None else int.from_bytes(os.urandom(7), "little")
        self.generator = torch.Generator().manual_seed(seed + self.index)


class BatchDecoder:
    """Decodes a list of sequences together on one loaded model (model, tokenizer, device)."""

    def __init__(self, model, tokenizer, device: str, end_ids: set[int]):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.end_ids = end_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
        self.cache_arg = _cache_argument(model)

    def run(self, seqs: list[Sequence], should_abort: Callable[[], bool] = lambda: False) -> None:
        import torch
        from transformers import DynamicCache

        active = [s for s in seqs if not s.cancelled.is_set()]
        for seq in seqs:
            if seq.cancelled.is_set():
                self._finish(seq, "cancelled")
        if not active:
            return
        width = max(len(s.prompt_ids) for s in active)
        ids = torch.tensor([[self.pad_id] * (width - len(s.prompt_ids)) + s.prompt_ids for s in active])
        mask = torch.tensor([[0] * (width - len(s.prompt_ids)) + [1] * len(s.prompt_ids) for s in active])
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            logits = self._forward(ids, mask, positions, cache)
            while active:
                tokens = self._choose(active, logits)
                keep = [row for row, (seq, token) in enumerate(zip(active, tokens)) if self._advance(seq, token)]
                if should_abort():
                    keep = []
                if len(keep) < len(active):
                    for row, seq in enumerate(active):
                        if row not in keep and seq.finish_reason is None:
                            self._finish(seq, "cancelled")
                    if not keep:
                        return
                    index = torch.tensor(keep, device=ids.device)
                    cache.batch_select_indices(index)
                    mask, positions, tokens = mask[index], positions[index], [tokens[r] for r in keep]
                    active = [active[r] for r in keep]
                step = torch.tensor(tokens, device=ids.device).unsqueeze(1)
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                positions = positions[:, -1:] + 1
                logits = self._forward(step, mask, positions, cache)

    def _forward(self, ids, mask, positions, cache):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_arg: cache})
        return out.logits[:, -1, :].float()

    def _choose(self, seqs: list[Sequence], logits) -> list[int]:
        """The next token of every row: argmax for temperature 0, else a draw from its own generator."""
        import torch

        tokens = []
        for row, seq in enumerate(seqs):
            scores = logits[row]
            if len(seq.out_ids) < seq.params.min_tokens and self.end_ids:
                scores = scores.clone()
                scores[list(self.end_ids)] = float("-inf")
            if seq.params.temperature == 0:
                tokens.append(int(scores.argmax()))
                continue
            probs = torch.softmax(scores / seq.params.temperature, dim=-1)
            if seq.params.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(-1) - sorted_probs > seq.params.top_p  # keeps at least one
                sorted_probs[outside] = 0
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            tokens.append(int(torch.multinomial(probs, 1, generator=seq.generator)))
        return tokens

    def _advance(self, seq: Sequence, token: int) -> bool:
        """Add a token to a row and emit the new text; False when the row is done."""
        if seq.cancelled.is_set():
            self._finish(seq, "cancelled")
            return False
        if token in self.end_ids:
            self._finish(seq, "stop")
            return False
        seq.out_ids.append(token)
        text = self.tokenizer.decode(seq.out_ids, skip_special_tokens=True)
        if len(seq.out_ids) >= seq.params.min_tokens:
            for stop in seq.params.stop:
                at = text.find(stop, seq.sent)  # emitted text never holds a stop string
                if at >= 0:
                    seq.text = text[:at]
                    self._finish(seq, "stop")
                    return False
        seq.text = text
        if len(seq.out_ids) >= seq.params.max_tokens:
            self._finish(seq, "length")
            return False
        # Hold back a partial UTF-8 character and anything that could be the start of a stop string.
        hold = max((len(s) - 1 for s in seq.params.stop), default=0)
        ready = len(text) - hold
        if text.endswith("\ufffd"):
            ready = min(ready, len(text) - 1)
        if ready > seq.sent:
            seq.emit(seq, text[seq.sent:ready], None)
            seq.sent = ready
        return True

    @staticmethod
    def _finish(seq: Sequence, reason: str) -> None:
        if reason == "cancelled" and seq.cancelled.is_set():
            log.info("client went away: stopped a sequence after %d tokens", len(seq.out_ids))
        seq.finish_reason = reason
        seq.emit(seq, seq.text[seq.sent:], reason)
        seq.sent = len(seq.text)


def _cache_argument(model) -> str:
    """transformers 5.24 renamed forward's `past_key_values` to `cache` (the old name warns)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
