"""Style attribution ("quantify the fine-tuning").

1. The perplexity matrix: each model's perplexity on each dataset's text (its test split); the model with
   the lowest perplexity on a dataset is the one whose style the dataset fits best.
2. Sample attribution: prompts drawn from the datasets, each model continues them; every continuation is
   scored by every model (NLL of the continuation given the prompt) and attributed to the model that finds
   it least surprising. The confusion matrix counts rows = generating model, columns = attributed model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..errors import WorkbenchError


@dataclass
class StyleResult:
    models: list[str]
    datasets: list[str]
    perplexity: list[list[float]]          # [model][dataset]
    best_model_per_dataset: dict = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)  # [generator][attributed]
    accuracy: float | None = None          # share of samples attributed to their own generator
    # The same with each scoring model's NLLs centred on its mean over all samples, so a model that is
    # simply sharper everywhere does not collect every sample.
    confusion_calibrated: list[list[int]] = field(default_factory=list)
    accuracy_calibrated: float | None = None
    samples: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def draw_prompts(text: str, count: int, words: int = 8, seed: int = 0) -> list[str]:
    """`count` prompts of the first `words` words of randomly chosen (seeded) lines with enough words."""
    lines = [line.strip() for line in text.splitlines() if len(line.split()) >= words]
    if not lines:
        raise WorkbenchError(f"no line of at least {words} words to draw prompts from")
    rng = random.Random(seed)
    picks = rng.sample(lines, count) if count <= len(lines) else [rng.choice(lines) for _ in range(count)]
    return [" ".join(line.split()[:words]) for line in picks]


def continuation_nll(loaded, prompt: str, continuation_ids: list[int]) -> float:
    """Mean NLL (nats/token) of continuation_ids after BOS + prompt under `loaded` (left-cut to the context)."""
    import torch
    import torch.nn.functional as F

    from .perplexity import encode_text, prefix_token_id

    if not continuation_ids:
        return math.inf
    context_ids = [prefix_token_id(loaded.tokenizer)] + encode_text(loaded.tokenizer, prompt)
    ids = (context_ids + list(continuation_ids))[-(loaded.context_length + 1):]
    n = min(len(continuation_ids), len(ids) - 1)
    inputs = torch.tensor([ids[:-1]], device=loaded.device)
    with torch.inference_mode():
        logits = loaded.model(input_ids=inputs, use_cache=False, logits_to_keep=n).logits[0].float()
    targets = torch.tensor(ids[-n:], device=loaded.device)
    return float(F.cross_entropy(logits, targets, reduction="mean"))


def perplexity_matrix(loaded_models: dict, texts: dict[str, str], score: Callable | None = None,
                      on_progress: Callable[[int, int], None] | None = None, **ppl_kwargs) -> list[list[float]]:
    """[model][dataset] perplexities. `score(model_name, dataset_name) -> float` overrides the computation
    (the service passes a cached one); otherwise perplexity.perplexity(loaded, text, **ppl_kwargs)."""
    from .perplexity import perplexity

    total = len(loaded_models) * len(texts)
    matrix, done = [], 0
    for model_name, loaded in loaded_models.items():
        row = []
        for dataset_name, text in texts.items():
            if score is not None:
                row.append(float(score(model_name, dataset_name)))
            else:
                row.append(perplexity(loaded, text, **ppl_kwargs).perplexity)
            done += 1
            if on_progress:
                on_progress(done, total)
        matrix.append(row)
    return matrix


def attribute_samples(loaded_models: dict, prompts: dict[str, list[str]], settings=None,
                      on_progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> tuple[list[list[int]], list[dict]]:
    """Every model continues every prompt; each continuation goes to the model with the lowest NLL."""
    from ..generation import GenerationSettings, generate
    from .perplexity import EvaluationCancelled

    settings = settings or GenerationSettings(max_new_tokens=32)
    names = list(loaded_models)
    confusion = [[0] * len(names) for _ in names]
    samples = []
    flat = [(dataset, prompt) for dataset, items in prompts.items() for prompt in items]
    total, done = len(names) * len(flat), 0
    for gen_index, gen_name in enumerate(names):
        if should_stop and should_stop():
            raise EvaluationCancelled("evaluation cancelled")
        outputs = generate(loaded_models[gen_name], [p for _, p in flat], settings)
        for (dataset, prompt), output in zip(flat, outputs):
            ids = [i for i in output.token_ids if i != loaded_models[gen_name].tokenizer.eos_token_id]
            nlls = {name: continuation_nll(loaded_models[name], prompt, ids) for name in names}
            best = min(names, key=lambda name: nlls[name])
            confusion[gen_index][names.index(best)] += 1
            samples.append({"generator": gen_name, "dataset": dataset, "prompt": prompt, "text": output.text,
                            "nll": nlls, "attributed": best})
            done += 1
            if on_progress:
                on_progress(done, total)
    return confusion, samples


def calibrated_confusion(names: list[str], samples: list[dict]) -> tuple[list[list[int]], float]:
    """Confusion after centring each scoring model's NLLs on its mean over all samples."""
    means = {n: sum(s["nll"][n] for s in samples) / len(samples) for n in names}
    confusion = [[0] * len(names) for _ in names]
    for sample in samples:
        best = min(names, key=lambda n: sample["nll"][n] - means[n])
        sample["attributed_calibrated"] = best
        confusion[names.index(sample["generator"])][names.index(best)] += 1
    correct = sum(confusion[i][i] for i in range(len(names)))
    return confusion, correct / max(1, len(samples))


def style_attribution(loaded_models: dict, texts: dict[str, str], prompts_per_dataset: int = 4,
                      prompt_words: int = 8, new_tokens: int = 32, seed: int = 0, settings=None,
                      score: Callable | None = None, on_progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None, **ppl_kwargs) -> StyleResult:
    """Both halves of style attribution for models {name: LoadedModel} and texts {dataset: text}."""
    from ..generation import GenerationSettings

    if not loaded_models or not texts:
        raise WorkbenchError("style attribution needs at least one model and one dataset")
    settings = GenerationSettings.from_dict({**(settings or GenerationSettings()).to_dict(),
                                             "max_new_tokens": new_tokens, "num_return_sequences": 1})
    n_cells = len(loaded_models) * len(texts)
    n_samples = len(loaded_models) * len(texts) * prompts_per_dataset
    total = n_cells + n_samples

    def cells_progress(done: int, _total: int) -> None:
        if on_progress:
            on_progress(done, total)

    def samples_progress(done: int, _total: int) -> None:
        if on_progress:
            on_progress(n_cells + done, total)

    matrix = perplexity_matrix(loaded_models, texts, score=score, on_progress=cells_progress, **ppl_kwargs)
    names, datasets = list(loaded_models), list(texts)
    best = {d: names[min(range(len(names)), key=lambda m: matrix[m][j])] for j, d in enumerate(datasets)}
    prompts = {d: draw_prompts(texts[d], prompts_per_dataset, prompt_words, seed + j)
               for j, d in enumerate(datasets)} if prompts_per_dataset > 0 else {}
    confusion, samples = ([], [])
    accuracy = None
    if prompts:
        confusion, samples = attribute_samples(loaded_models, prompts, settings, samples_progress, should_stop)
        correct = sum(confusion[i][i] for i in range(len(names)))
        accuracy = correct / max(1, sum(map(sum, confusion)))
    calibrated, accuracy_calibrated = calibrated_confusion(names, samples) if samples else ([], None)
    return StyleResult(
        models=names, datasets=datasets, perplexity=matrix, best_model_per_dataset=best, confusion=confusion,
        accuracy=accuracy, confusion_calibrated=calibrated, accuracy_calibrated=accuracy_calibrated,
        samples=samples, settings={
        "prompts_per_dataset": prompts_per_dataset, "prompt_words": prompt_words, "new_tokens": new_tokens,
        "seed": seed, "generation": settings.to_dict(), **{k: v for k, v in ppl_kwargs.items()
                                                           if k in ("context", "stride", "dtype")}})
