"""Generation settings, batch generation and token streaming (chat and dialogue prompting: chat.py).

Tokenizer rules from the seeds: pad = EOS when the tokenizer has none, left padding for batches, the
attention mask always passed, `skip_special_tokens=True` when decoding. Generation stops on every end
token of the model (generation_config.json's eos_token_id list and the tokenizer's EOS).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from .errors import WorkbenchError
from .models import LoadedModel

log = logging.getLogger("workbench.generation")


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    min_new_tokens: int = 0  # end tokens are held back until this many tokens are generated
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None
    int8_decode: bool = False  # int8 weight-only matrices in the batch-1 decoder (half the bytes per token)

    def validate(self) -> "GenerationSettings":
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be at least 1 (got {self.max_new_tokens})"),
            (0 <= self.min_new_tokens <= self.max_new_tokens,
             f"min_new_tokens must be between 0 and max_new_tokens (got {self.min_new_tokens})"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1] (got {self.top_p})"),
            (self.top_k >= 0, f"top_k must be 0 (off) or more (got {self.top_k})"),
            (not self.do_sample or self.temperature > 0,
             f"temperature must be above 0 when sampling (got {self.temperature})"),
            (self.temperature >= 0, f"temperature must not be negative (got {self.temperature})"),
            (self.repetition_penalty > 0,
             f"repetition_penalty must be above 0 (got {self.repetition_penalty})"),
            (self.num_return_sequences >= 1,
             f"num_return_sequences must be at least 1 (got {self.num_return_sequences})"),
            (self.do_sample or self.num_return_sequences == 1,
             "num_return_sequences above 1 needs sampling (--sample)"),
        ]
        for ok, message in checks:
            if not ok:
                raise WorkbenchError(message)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def generate_kwargs(self, tokenizer, end_ids: list[int] | tuple[int, ...] | None = None) -> dict:
        """Keyword arguments of model.generate; it stops on any of `end_ids` (default: the EOS)."""
        kwargs = dict(
            max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
            repetition_penalty=self.repetition_penalty, num_return_sequences=self.num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=list(end_ids) if end_ids else tokenizer.eos_token_id,
        )
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k or None, top_p=self.top_p)
        return kwargs


@dataclass
class GenerationOutput:
    prompt: str
    text: str
    new_tokens: int
    token_ids: list[int] = field(default_factory=list, repr=False)
    truncated_prompt: bool = False


def prompt_budget(loaded: LoadedModel, settings: GenerationSettings) -> int:
    """How many prompt tokens fit beside max_new_tokens in the model's context."""
    budget = loaded.context_length - settings.max_new_tokens
    if budget < 1:
        raise WorkbenchError(
            f"max_new_tokens ({settings.max_new_tokens}) must be below the context of "
            f"'{loaded.name}' ({loaded.context_length} tokens)"
        )
    return budget


def end_ids(loaded: LoadedModel) -> tuple[int, ...]:
    """Every token id that ends a reply of this model (templates.end_token_ids)."""
    fmt = getattr(loaded, "chat_format", None)
    if fmt is not None and fmt.end_ids:
        return fmt.end_ids
    from .templates import end_token_ids

    config = getattr(loaded.model, "generation_config", None)
    return end_token_ids(loaded.tokenizer, getattr(config, "eos_token_id", None))


def encode_text(loaded: LoadedModel, text: str, templated: bool = False) -> list[int]:
    """Plain text as bare tokens; template-rendered text with BOS exactly once (templates.encode)."""
    if templated:
        from .templates import encode

        return encode(loaded.tokenizer, text)
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompt(loaded: LoadedModel, prompt: str, budget: int, templated: bool = False) -> tuple[list[int], bool]:
    """Token ids of a prompt, cut from the left to `budget`; an empty prompt becomes the BOS token.

    A plain prompt is encoded as bare text; a prompt rendered by a chat template (`templated`) gets BOS
    exactly as the template or the tokenizer expects it (templates.encode)."""
    tokenizer = loaded.tokenizer
    ids = encode_text(loaded, prompt, templated) if prompt else []
    if not ids:
        ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    truncated = len(ids) > budget
    return ids[-budget:], truncated


def _seed(settings: GenerationSettings) -> None:
    if settings.seed is not None:
        import torch

        torch.manual_seed(settings.seed)


def _batch_tensors(loaded: LoadedModel, id_lists: list[list[int]]):
    """Left-padded input ids and attention mask on the model's device."""
    import torch

    width = max(len(ids) for ids in id_lists)
    pad = loaded.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in id_lists])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in id_lists])
    return input_ids.to(loaded.device), mask.to(loaded.device)


def generate(loaded: LoadedModel, prompts: list[str], settings: GenerationSettings,
             warn: Callable[[str], None] | None = None,
             stop: threading.Event | None = None, templated: bool = False) -> list[GenerationOutput]:
    """Continue every prompt in one batched call. num_return_sequences outputs per prompt, in order.

    Setting `stop` (from another thread) ends generation after the current token. `templated`: the
    prompts were rendered by the model's chat template (see encode_prompt)."""
    import torch

    settings.validate()
    if not prompts:
        return []
    budget = prompt_budget(loaded, settings)
    encoded = [encode_prompt(loaded, p, budget, templated) for p in prompts]
    for prompt, (_, truncated) in zip(prompts, encoded):
        if truncated and warn:
            warn(f"prompt longer than the context: kept its last {budget} tokens ({prompt[:30]!r}...)")
    _seed(settings)
    fast = _fast_decoder(loaded, len(prompts), settings)
    if fast is not None:
        ids = fast.generate(encoded[0][0], settings, set(end_ids(loaded)), stop=stop)
        text = loaded.tokenizer.decode(ids, skip_special_tokens=True)
        return [GenerationOutput(prompts[0], text, len(ids), ids, encoded[0][1])]
    input_ids, mask = _batch_tensors(loaded, [ids for ids, _ in encoded])
    with torch.inference_mode():
        output = loaded.model.generate(input_ids=input_ids, attention_mask=mask,
                                       stopping_criteria=_stop_criteria(stop),
                                       **settings.generate_kwargs(loaded.tokenizer, end_ids(loaded)))
    new = output[:, input_ids.shape[1]:].tolist()
    results = []
    for index, ids in enumerate(new):
        source = index // settings.num_return_sequences
        ids = _strip_padding(ids, end_ids(loaded))
        text = loaded.tokenizer.decode(ids, skip_special_tokens=True)
        results.append(GenerationOutput(prompts[source], text, len(ids), ids, encoded[source][1]))
    return results


def _fast_decoder(loaded: LoadedModel, prompts: int, settings: GenerationSettings):
    """The model's batch-1 decoder (core.decoding) when it applies, else None (transformers' generate)."""
    from .decoding import decoder_for, fast_path_unavailable

    reason = fast_path_unavailable(prompts, settings)
    if reason is not None:
        log.info("generation through transformers' generate: %s", reason)
        return None
    return decoder_for(loaded, int8=settings.int8_decode)


def _stop_criteria(stop: threading.Event | None):
    """A StoppingCriteriaList that ends generation once `stop` is set."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return bool(stop is not None and stop.is_set())

    return StoppingCriteriaList([_StopOnEvent()])


def _strip_padding(ids: list[int], ends: tuple[int, ...]) -> list[int]:
    """Generated ids up to and including the first end token (the rest is padding of a finished row)."""
    for index, token in enumerate(ids):
        if token in ends:
            return ids[: index + 1]
    return ids


def stream(loaded: LoadedModel, prompt: str, settings: GenerationSettings,
           stop: threading.Event | None = None, warn: Callable[[str], None] | None = None,
           templated: bool = False) -> Iterator[str]:
    """Yield text pieces as tokens are generated; setting `stop` ends generation early."""
    settings = GenerationSettings.from_dict({**settings.to_dict(), "num_return_sequences": 1}).validate()
    budget = prompt_budget(loaded, settings)
    ids, truncated = encode_prompt(loaded, prompt, budget, templated)
    if truncated and warn:
        warn(f"prompt longer than the context: kept its last {budget} tokens")
    yield from stream_ids(loaded, ids, settings, stop)


def stream_ids(loaded: LoadedModel, ids: list[int], settings: GenerationSettings,
               stop: threading.Event | None = None) -> Iterator[str]:
    """stream() from prompt token ids that already fit the context."""
    import torch

    input_ids, mask = _batch_tensors(loaded, [ids])
    streamer = _TokenStreamer(loaded.tokenizer)

    errors: list[BaseException] = []

    fast = _fast_decoder(loaded, 1, settings)

    def run() -> None:
        try:
            _seed(settings)
            if fast is not None:
                streamer.put(None)  # the prompt (skipped)
                fast.generate(ids, settings, set(end_ids(loaded)), stop=stop,
                              on_token=lambda token: streamer.put(torch.tensor([token])))
                streamer.end()
                return
            with torch.inference_mode():
                loaded.model.generate(
                    input_ids=input_ids, attention_mask=mask, streamer=streamer,
                    stopping_criteria=_stop_criteria(stop),
                    **settings.generate_kwargs(loaded.tokenizer, end_ids(loaded)),
                )
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread
            errors.append(error)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True, name="workbench-generate")
    worker.start()
    for piece in streamer:
        if piece:
            yield piece
    worker.join()
    if errors:
        raise WorkbenchError(f"generation failed: {errors[0]}")


class _TokenStreamer:
    """Text as each token arrives (transformers' TextIteratorStreamer waits for whole words).

    Decodes the growing id list and hands out the new suffix; holds back while the last token is an
    incomplete UTF-8 sequence, so the pieces always join to the non-streamed decode."""

    def __init__(self, tokenizer):
        import queue

        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False
        self.queue: queue.Queue = queue.Queue()

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self.queue.put(text[self.sent:])
            self.sent = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self.queue.put(text[self.sent:])
        self.queue.put(None)

    def __iter__(self):
        while (piece := self.queue.get()) is not None:
            yield piece
