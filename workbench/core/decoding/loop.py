"""The decode loop: prefix reuse across calls, token choice with GenerationSettings' semantics, end tokens,
a stop event and a per-token callback. One Decoder per loaded model, kept on it by `decoder_for`.

Prefix reuse: the decoder remembers which token ids its cache holds (the last prompt and its reply). A new
prompt that starts with some of them (the next chat turn: the history so far plus a new message) only
encodes the rest; one that differs early (a trimmed or edited history) encodes from where it differs,
from scratch at worst. Either way the logits are those of a full encode, so the replies are the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from .steps import LlamaStep, ModelStep, llama_step_unavailable

log = logging.getLogger("workbench.decoding")

_ATTRIBUTE = "_workbench_decoder"


def end_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends a reply: the tokenizer's EOS and each EOS of the model's generation_config."""
    ids: set[int] = set()
    sources = [getattr(tokenizer, "eos_token_id", None),
               getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    for value in sources:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value)
    return ids


def fast_path_unavailable(prompts: int, settings) -> str | None:
    """Why a request needs transformers' `generate` instead of the decoder (None when it does not)."""
    if prompts != 1:
        return f"{prompts} prompts in one batch"
    if getattr(settings, "num_return_sequences", 1) != 1:
        return "several return sequences"
    return None


class Decoder:
    """Batch-1 decoding of one model with a kept KV cache (see the module docstring)."""

    def __init__(self, model, int8: bool = False):
        reason = llama_step_unavailable(model)
        if reason is None:
            self.step = LlamaStep(model, int8=int8)
        else:
            if int8:
                log.info("int8 decode needs a Llama-layout model (%s): using the model's own weights", reason)
            log.debug("decoder: the model's own forward (%s)", reason)
            self.step = ModelStep(model)
        self.kind = type(self.step).__name__
        self.requested_int8 = int8
        self.int8 = int8 and isinstance(self.step, LlamaStep)
        self.cached: list[int] = []  # token ids whose keys/values the step holds, in order
        self.lock = threading.Lock()
        self.reused = 0  # prompt tokens served from the cache by the last call (for benches and tests)

    def reset(self) -> None:
        with self.lock:
            self.step.reset()
            self.cached = []

    def _prefill(self, prompt: list[int], reuse: bool):
        """Logits after `prompt`, encoding only what the cache does not already hold."""
        keep = 0
        if reuse:
            limit = min(len(self.cached), len(prompt) - 1)  # at least one token must run to get logits
            while keep < limit and self.cached[keep] == prompt[keep]:
                keep += 1
        if keep == 0:
            self.step.reset()
        else:
            self.step.crop(keep)
            keep = self.step.length  # a step that could not crop starts afresh
        self.reused = keep
        self.cached = list(prompt[:keep])
        logits = self.step.forward(prompt[keep:])
        self.cached = list(prompt)
        return logits

    def generate(self, prompt: list[int], settings, end_ids: set[int],
                 stop: threading.Event | None = None, on_token: Callable[[int], None] | None = None,
                 reuse: bool = True) -> list[int]:
        """New token ids after `prompt` (the end token included when one is produced).

        settings: a GenerationSettings (max/min_new_tokens, do_sample, temperature, top_k, top_p,
        repetition_penalty; seeding is the caller's). Setting `stop` ends after the current token."""
        import torch

        chooser = _Chooser(settings, end_ids, len(prompt))
        out: list[int] = []
        with self.lock, torch.inference_mode():
            try:
                logits = self._prefill(prompt, reuse)
                while True:
                    token = chooser.choose(logits, prompt, out)
                    out.append(token)
                    if on_token is not None:
                        on_token(token)
                    if (token in end_ids or len(out) >= settings.max_new_tokens
                            or (stop is not None and stop.is_set())):
                        break
                    logits = self.step.forward([token])
                    self.cached.append(token)
            except BaseException:
                self.step.reset()  # a half-written cache must not be reused
                self.cached = []
                raise
        return out


class _Chooser:
    """The next token from logits, with the processors `generate` would apply for these settings
    (repetition penalty, min_new_tokens, then for sampling temperature, top-k, top-p), transformers' own."""

    def __init__(self, settings, end_ids: set[int], prompt_length: int):
        from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

        self.sample = bool(settings.do_sample)
        self.min_new = int(getattr(settings, "min_new_tokens", 0) or 0)
        self.end_ids = sorted(end_ids)
        self.processors = LogitsProcessorList()
        if settings.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(penalty=settings.repetition_penalty))
        self.warpers = LogitsProcessorList()
        if self.sample:
            if settings.temperature != 1.0:
                self.warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k:
                self.warpers.append(TopKLogitsWarper(top_k=settings.top_k))
            if settings.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(top_p=settings.top_p))

    def choose(self, logits, prompt: list[int], out: list[int]) -> int:
        import torch

        if not self.processors and not self.warpers and len(out) >= self.min_new and not self.sample:
            return int(logits.argmax())
        scores = logits[None].clone()
        ids = torch.tensor([prompt + out], dtype=torch.long, device=scores.device)
        scores = self.processors(ids, scores)
        if len(out) < self.min_new and self.end_ids:
            scores[:, self.end_ids] = -float("inf")
        if not self.sample:
            return int(scores.argmax())
        scores = self.warpers(ids, scores)
        return int(torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[0, 0])


def decoder_for(loaded, int8: bool = False) -> Decoder:
    """The Decoder kept on a models.LoadedModel (built on first use; rebuilt when int8 changes)."""
    decoder = getattr(loaded, _ATTRIBUTE, None)
    if decoder is None or decoder.requested_int8 != int8:
        decoder = Decoder(loaded.model, int8=int8)
        setattr(loaded, _ATTRIBUTE, decoder)
    return decoder
