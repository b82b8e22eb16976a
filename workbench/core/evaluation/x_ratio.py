"""X-token ratio: the share of generated tokens whose text contains a letter (DESIGN.md).

Generate N new tokens (default 200) per sample, decode each generated id on its own
(`tokenizer.decode([id])`) and count those whose text contains the letter, case-insensitively. Beside it,
the vocabulary's base rate: the share of all token ids whose text contains the letter (GPT-2, "x": 985 of
50,257 = 1.96 %).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..errors import WorkbenchError


def _check_letter(letter: str) -> str:
    if not isinstance(letter, str) or len(letter) != 1 or not letter.strip():
        raise WorkbenchError(f"--letter must be a single character (got {letter!r})")
    return letter.lower()


def contains_letter(tokenizer, token_id: int, letter: str) -> bool:
    return letter in tokenizer.decode([int(token_id)]).lower()


def base_rate(tokenizer, letter: str = "x") -> dict:
    """{"letter", "tokens", "vocab", "rate"}: how many of the tokenizer's ids contain the letter."""
    letter = _check_letter(letter)
    vocab = len(tokenizer)
    hits = sum(1 for token_id in range(vocab) if contains_letter(tokenizer, token_id, letter))
    return {"letter": letter, "tokens": hits, "vocab": vocab, "rate": hits / vocab}


def random_prompt_ids(tokenizer, samples: int, prompt_tokens: int, seed: int) -> list[list[int]]:
    """`samples` prompts of `prompt_tokens` random (non-special) token ids, reproducible from the seed."""
    import torch

    special = set(tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(allowed), (samples, prompt_tokens), generator=generator)
    return allowed[picks].tolist()


@dataclass
class XRatioSample:
    prompt: str
    text: str
    tokens: int
    hits: int
    ratio: float
    token_ids: list = field(default_factory=list, repr=False)


@dataclass
class XRatioResult:
    letter: str
    ratio: float            # hits / generated tokens over all samples
    tokens: int
    hits: int
    base_rate: float
    base_tokens: int
    vocab: int
    samples: list[XRatioSample] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def x_ratio(loaded, letter: str = "x", tokens: int = 200, prompts: list[str] | None = None,
            samples: int = 4, prompt_tokens: int = 8, seed: int = 0, settings=None,
            on_progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> XRatioResult:
    """Generate `tokens` new tokens per prompt (text prompts, or `samples` seeded random-id prompts) and
    measure the letter's share. Greedy unless `settings` (a GenerationSettings) says otherwise."""
    import torch

    from ..generation import GenerationSettings, _batch_tensors, encode_prompt
    from .perplexity import EvaluationCancelled

    letter = _check_letter(letter)
    if tokens < 1:
        raise WorkbenchError(f"--tokens must be at least 1 (got {tokens})")
    settings = GenerationSettings.from_dict({**(settings or GenerationSettings()).to_dict(),
                                             "max_new_tokens": tokens, "num_return_sequences": 1})
    settings.validate()
    tokenizer = loaded.tokenizer
    budget = loaded.context_length - tokens
    if budget < 1:
        raise WorkbenchError(f"--tokens {tokens} must be below the context of '{loaded.name}' "
                             f"({loaded.context_length} tokens)")
    if prompts:
        id_lists = [encode_prompt(loaded, p, budget)[0] for p in prompts]
        texts = list(prompts)
    else:
        if samples < 1:
            raise WorkbenchError(f"--samples must be at least 1 (got {samples})")
        if prompt_tokens < 1:
            raise WorkbenchError(f"--prompt-tokens must be at least 1 (got {prompt_tokens})")
        id_lists = [ids[-budget:] for ids in random_prompt_ids(tokenizer, samples, prompt_tokens, seed)]
        texts = [tokenizer.decode(ids) for ids in id_lists]
    base = base_rate(tokenizer, letter)
    kwargs = settings.generate_kwargs(tokenizer)
    kwargs["min_new_tokens"] = tokens  # exactly N new tokens: no early end of text
    results: list[XRatioSample] = []
    if on_progress:
        on_progress(0, len(id_lists))
    for index, ids in enumerate(id_lists):  # one at a time: no padding, each sample its own seed
        if should_stop and should_stop():
            raise EvaluationCancelled("evaluation cancelled")
        input_ids, mask = _batch_tensors(loaded, [ids])
        if settings.do_sample:
            torch.manual_seed((settings.seed if settings.seed is not None else seed) + index)
        with torch.inference_mode():
            output = loaded.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = output[0, input_ids.shape[1]:].tolist()
        hits = sum(1 for token_id in new if contains_letter(tokenizer, token_id, letter))
        results.append(XRatioSample(texts[index], tokenizer.decode(new), len(new), hits,
                                    hits / max(1, len(new)), new))
        if on_progress:
            on_progress(index + 1, len(id_lists))
    total = sum(s.tokens for s in results)
    hits = sum(s.hits for s in results)
    return XRatioResult(letter, hits / max(1, total), total, hits, base["rate"], base["tokens"],
                        base["vocab"], results)
