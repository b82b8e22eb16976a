"""BLEU and ROUGE of a model's continuations against references (DESIGN.md "Metrics, defined once").

A references file is JSONL, one {"prompt": ..., "reference": ...} per line. The model continues each
prompt (greedy unless the settings say otherwise, batched); the hypotheses are kept with the result so
anyone can recompute the scores with sacrebleu and rouge-score directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import WorkbenchError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def read_references(path: str | Path) -> list[dict]:
    """[{"prompt", "reference"}] from a JSONL file; a one-line error names the bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise WorkbenchError(f"cannot read references file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise WorkbenchError(f"{path}: not UTF-8 text") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise WorkbenchError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) \
                or not isinstance(item.get("reference"), str):
            raise WorkbenchError(f'{path}:{number}: expected {{"prompt": str, "reference": str}}')
        pairs.append({"prompt": item["prompt"], "reference": item["reference"]})
    if not pairs:
        raise WorkbenchError(f"{path}: no prompt/reference pairs")
    return pairs


def generate_hypotheses(loaded, prompts: list[str], settings=None, batch_size: int = 8,
                        on_progress: Callable[[int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None, templated: bool = False) -> list[str]:
    """The model's continuation of every prompt (generation.generate in batches), stripped. `templated`:
    the prompts were rendered by the model's chat template (BOS as the template wants it)."""
    from ..generation import GenerationSettings, generate
    from .perplexity import EvaluationCancelled

    settings = settings or GenerationSettings()
    if settings.num_return_sequences != 1:
        raise WorkbenchError("BLEU/ROUGE need one hypothesis per prompt (num_return_sequences 1)")
    hypotheses: list[str] = []
    if on_progress:
        on_progress(0, len(prompts))
    for begin in range(0, len(prompts), max(1, batch_size)):
        if should_stop and should_stop():
            raise EvaluationCancelled("evaluation cancelled")
        batch = prompts[begin:begin + batch_size]
        hypotheses.extend(out.text.strip() for out in generate(loaded, batch, settings, templated=templated))
        if on_progress:
            on_progress(len(hypotheses), len(prompts))
    return hypotheses


def bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU (0-100) and its signature string."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    score = metric.corpus_score(hypotheses, [references])
    return float(score.score), str(metric.get_signature())


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """rouge-score F-measures (stemmed), averaged over the pairs (0-1)."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(reference, hypothesis)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    count = max(1, len(hypotheses))
    return {key: value / count for key, value in totals.items()}


# ---------------------------------------------------------------- SQuAD-style answer metrics

_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, punctuation removed, articles a/an/the dropped, whitespace fixed."""
    import string

    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(word for word in text.split() if word not in _ARTICLES)


def exact_match(hypothesis: str, reference: str) -> float:
    return float(normalize_answer(hypothesis) == normalize_answer(reference))


def token_f1(hypothesis: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (SQuAD's F1, 0-1)."""
    from collections import Counter

    hyp, ref = normalize_answer(hypothesis).split(), normalize_answer(reference).split()
    if not hyp or not ref:
        return float(hyp == ref)
    common = sum((Counter(hyp) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)
