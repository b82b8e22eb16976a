"""Evaluation requests over registered models: compute, store in the registry, answer repeats from it.

Every result is stored (Registry.add_evaluation, one row per metric) with its settings, the sha256 of the
model's weights and of the data it was computed on, and a cache key over (task, those hashes, settings).
The same request on the same hashes is answered from the registry (result["cached"] is True and on_info
says so) unless `fresh`. The CLI (`workbench eval`) and the TUI both call `evaluate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError

TASKS = ("ppl", "bleu", "rouge", "f1", "exact-match", "x-ratio", "style")
REF_TASKS = ("bleu", "rouge", "f1", "exact-match")  # scored against --refs
_ALIASES = {"perplexity": "ppl", "x_ratio": "x-ratio", "xratio": "x-ratio", "x": "x-ratio",
            "bits_per_byte": "ppl", "rouge1": "rouge", "rouge2": "rouge", "rougel": "rouge",
            "rougelsum": "rouge", "em": "exact-match", "exact_match": "exact-match", "exactmatch": "exact-match",
            "token-f1": "f1", "token_f1": "f1"}
PPL_METRICS = ("perplexity", "bits_per_byte", "word_perplexity")
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CHAT_TEMPLATE_MODES = ("auto", "on", "off")


def metric_names(tasks: list[str]) -> list[str]:
    """The per-model metric names the requested tasks report (what gates may name)."""
    names = {"ppl": list(PPL_METRICS), "bleu": ["bleu"], "rouge": list(ROUGE_METRICS), "f1": ["f1"],
             "exact-match": ["exact_match"],
             "x-ratio": ["x_ratio"], "style": ["style_self_attribution"]}
    return [name for task in parse_metrics(tasks) for name in names[task]]


def parse_metrics(text: str | list[str]) -> list[str]:
    """'ppl,bleu' -> ['ppl', 'bleu'] (aliases accepted, order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in TASKS:
            raise WorkbenchError(f"unknown metric '{item.strip()}': choose from {', '.join(TASKS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise WorkbenchError(f"no metrics requested (--metrics {','.join(TASKS)})")
    return out


@dataclass
class EvalRequest:
    metrics: list[str] = field(default_factory=lambda: ["ppl"])
    data: list[str] = field(default_factory=list)   # dataset names (style takes several)
    split: str = "test"
    file: str | None = None                          # a text file for perplexity
    refs: str | None = None                          # JSONL {"prompt", "reference"} for bleu/rouge
    context: int | None = None
    stride: int | None = None
    batch_size: int = 8
    dtype: str = "fp32"                              # fp32 | bf16 (autocast) for perplexity
    generation: dict = field(default_factory=dict)   # GenerationSettings fields (bleu/rouge/style/x-ratio)
    letter: str = "x"
    tokens: int = 200
    prompts: list[str] = field(default_factory=list)  # x-ratio prompts (default: random token ids)
    samples: int = 4
    prompt_tokens: int = 8
    seed: int = 0
    style_prompts: int = 4                           # prompts drawn per dataset for sample attribution
    style_tokens: int = 32
    device: str | None = None
    fresh: bool = False
    chat_template: str = "auto"                      # bleu/rouge prompts: auto | on | off (see refs_prompting)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "EvalRequest":
        from ..generation import GenerationSettings

        self.metrics = parse_metrics(self.metrics)
        GenerationSettings.from_dict(self.generation).validate()
        if self.file and self.data and "ppl" in self.metrics:
            raise WorkbenchError("give perplexity one target: --data NAME or --file PATH, not both")
        if "ppl" in self.metrics:
            if not self.file and not self.data:
                raise WorkbenchError("perplexity needs --data NAME or --file PATH")
            if not self.file and len(self.data) > 1:
                raise WorkbenchError("perplexity takes one --data; several datasets are for --metrics style")
        if any(task in self.metrics for task in REF_TASKS) and not self.refs:
            raise WorkbenchError("bleu/rouge/f1/exact-match need --refs FILE (JSONL with prompt and reference)")
        if "style" in self.metrics and not self.data:
            raise WorkbenchError("style attribution needs --data NAME (one or more datasets)")
        if self.batch_size < 1:
            raise WorkbenchError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise WorkbenchError(f"unknown --chat-template '{self.chat_template}': use auto, on or off")
        if self.dtype not in ("fp32", "bf16"):
            raise WorkbenchError(f"unknown precision '{self.dtype}': use fp32 or bf16")
        return self


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(task: str, model_sha: str | None, data_sha: str | None, settings: dict) -> str:
    blob = json.dumps({"task": task, "model": model_sha, "data": data_sha, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def model_sha256(registry, name: str) -> str | None:
    """The weights' sha256; for an adapter, combined with its base model's."""
    record = registry.get_model(name)
    if record.adapter and record.parent:
        base = registry.get_model(record.parent).sha256
        return hashlib.sha256(f"{record.sha256}+{base}".encode()).hexdigest()
    return record.sha256


class _Runner:
    """One evaluation call: shared model cache, progress plumbing, cache lookups and storage."""

    def __init__(self, ctx, request: EvalRequest, cache=None, on_progress=None, on_stage=None, on_info=None,
                 should_stop=None):
        self.ctx, self.request = ctx, request
        self.cache = cache
        self.on_progress, self.on_stage, self.on_info = on_progress, on_stage, on_info
        self.should_stop = should_stop
        self._texts: dict[str, tuple[str, str, str]] = {}

    # ------------------------------------------------------------ helpers

    def info(self, message: str) -> None:
        if self.on_info:
            self.on_info(message)

    def stage(self, label: str) -> None:
        if self.on_stage:
            self.on_stage(label)

    def load(self, name: str):
        if self.cache is None:
            from ..models import ModelCache, quiet_transformers

            quiet_transformers()
            self.cache = ModelCache()
        return self.cache.get(self.ctx.registry, name, device=self.request.device, dtype=self._weights_dtype())

    def _weights_dtype(self) -> str | None:
        """"fp32" means fp32 weights, also on a GPU, where loading picks bf16 by default (found by
        bench/gpu_check.py on an H200); "bf16" runs under autocast over the device's default weights. On
        the CPU the default is fp32 already: None keeps the cache key that chat and the app share."""
        from ..models.load import resolve_device

        gpu = resolve_device(self.request.device) != "cpu"
        return "fp32" if gpu and self.request.dtype == "fp32" else None

    def dataset_text(self, name: str) -> tuple[str, str, str]:
        """(text, target label, sha256 of the text) of a dataset split."""
        key = f"data:{name}"
        if key not in self._texts:
            from ..data import read_split_text

            text = read_split_text(self.ctx, name, self.request.split)
            self._texts[key] = (text, f"{name}:{self.request.split}", sha256_text(text))
        return self._texts[key]

    def file_text(self, path: str) -> tuple[str, str, str]:
        key = f"file:{path}"
        if key not in self._texts:
            file = Path(path).expanduser()
            try:
                raw = file.read_bytes()
            except OSError as error:
                raise WorkbenchError(f"cannot read {path}: {error.strerror or error}") from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise WorkbenchError(f"{path}: not UTF-8 text") from None
            self._texts[key] = (text, f"file:{file.resolve()}", hashlib.sha256(raw).hexdigest())
        return self._texts[key]

    def run_task(self, task: str, model: str, target: str, data_sha: str, settings: dict,
                 compute: Callable[[], dict]) -> tuple[dict, bool]:
        """A task's result {"metrics": {...}, "details": {...}}, from the registry when cached."""
        registry = self.ctx.registry
        msha = model_sha256(registry, model)
        key = cache_key(task, msha, data_sha, settings)
        if not self.request.fresh:
            for row in reversed(registry.evaluations(cache_key=key)):
                if row.details.get("task") == task and "result" in row.details:
                    self.info(f"cached: {task} of '{model}' on {target} (computed {row.created_at}; "
                              "--fresh recomputes)")
                    return row.details["result"], True
        result = compute()
        first = True
        for metric, value in result["metrics"].items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            details = {"task": task, "result": result} if first else {"task": task, "part_of": key}
            registry.add_evaluation(model, metric, float(value), target=target, settings=settings,
                                    model_sha256=msha, data_sha256=data_sha, cache_key=key, details=details)
            first = False
        return result, False

    # ------------------------------------------------------------ tasks

    def ppl_settings(self, model: str) -> dict:
        """Resolved window settings (so --context 1024 on a 1024-token model shares the cache)."""
        r = self.request
        context = r.context or self.ctx.registry.get_model(model).context_length
        return {"context": context, "stride": r.stride or context, "dtype": r.dtype}

    def perplexity_on(self, model: str, text: str, target: str, data_sha: str) -> tuple[dict, bool]:
        r = self.request
        settings = self.ppl_settings(model)

        def compute() -> dict:
            from .perplexity import perplexity

            self.stage(f"perplexity of {model} on {target}")
            loaded = self.load(model)
            result = perplexity(loaded, text, context=r.context, stride=r.stride, batch_size=r.batch_size,
                                dtype=r.dtype, on_progress=self.on_progress, should_stop=self.should_stop)
            details = result.to_dict()
            return {"metrics": {k: details[k] for k in PPL_METRICS}, "details": details}

        return self.run_task("ppl", model, target, data_sha, settings, compute)

    def ppl(self, model: str) -> tuple[dict, bool]:
        r = self.request
        text, target, data_sha = self.file_text(r.file) if r.file else self.dataset_text(r.data[0])
        return self.perplexity_on(model, text, target, data_sha)

    def refs(self, model: str) -> tuple[dict, bool]:
        from ..generation import GenerationSettings
        from .text_metrics import bleu, exact_match, generate_hypotheses, read_references, rouge, token_f1

        r = self.request
        path = Path(r.refs).expanduser()
        pairs = read_references(path)
        data_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        settings_obj = GenerationSettings.from_dict(r.generation)
        prompting = refs_prompting(self.ctx.registry, model, r.chat_template)
        settings = {"generation": settings_obj.to_dict(), **prompting, "scores": "bleu,rouge,f1,exact_match"}

        def compute() -> dict:
            from ..chat import render_prompt

            self.stage(f"generating {len(pairs)} hypotheses with {model}")
            loaded = self.load(model)
            templated = prompting["chat_template"] == "on"
            prompts = [render_prompt(loaded, [{"role": "user", "content": p["prompt"]}]) if templated
                       else p["prompt"] for p in pairs]
            hyps = generate_hypotheses(loaded, prompts, settings_obj, r.batch_size,
                                       self.on_progress, self.should_stop, templated=templated)
            refs = [p["reference"] for p in pairs]
            score, signature = bleu(hyps, refs)
            samples = [{"prompt": p["prompt"], "reference": p["reference"], "hypothesis": h,
                        "f1": token_f1(h, p["reference"]), "exact_match": exact_match(h, p["reference"]),
                        **({"model_prompt": text} if templated else {})}
                       for p, h, text in zip(pairs, hyps, prompts)]
            count = max(1, len(samples))
            metrics = {"bleu": score, **rouge(hyps, refs), "f1": sum(s["f1"] for s in samples) / count,
                       "exact_match": sum(s["exact_match"] for s in samples) / count}
            return {"metrics": metrics, "details": {"bleu_signature": signature, "samples": samples}}

        return self.run_task("refs", model, f"refs:{path.resolve()}", data_sha, settings, compute)

    def xratio(self, model: str) -> tuple[dict, bool]:
        from ..generation import GenerationSettings
        from .x_ratio import x_ratio

        r = self.request
        gen = GenerationSettings.from_dict(r.generation)
        settings = {"letter": r.letter.lower(), "tokens": r.tokens, "samples": None if r.prompts else r.samples,
                    "prompt_tokens": None if r.prompts else r.prompt_tokens, "seed": r.seed,
                    "generation": {**gen.to_dict(), "max_new_tokens": r.tokens}}
        data_sha = sha256_text(json.dumps(r.prompts)) if r.prompts else None
        target = "prompts" if r.prompts else f"random-prompts(seed={r.seed})"

        def compute() -> dict:
            self.stage(f"x-ratio of {model} ({r.tokens} tokens x {len(r.prompts) or r.samples})")
            loaded = self.load(model)
            result = x_ratio(loaded, r.letter, r.tokens, r.prompts or None, r.samples, r.prompt_tokens, r.seed,
                             gen, self.on_progress, self.should_stop).to_dict()
            for sample in result["samples"]:
                sample.pop("token_ids", None)
            return {"metrics": {"x_ratio": result["ratio"]}, "details": result}

        return self.run_task("x-ratio", model, target, data_sha, settings, compute)

    def style(self, models: list[str]) -> tuple[dict, bool]:
        from ..generation import GenerationSettings

        r = self.request
        texts = {name: self.dataset_text(name) for name in r.data}
        gen = GenerationSettings.from_dict(r.generation)
        settings = {"models": models, "datasets": list(texts), "split": r.split,
                    "ppl": {m: self.ppl_settings(m) for m in models},
                    "prompts_per_dataset": r.style_prompts, "style_tokens": r.style_tokens, "seed": r.seed,
                    "generation": {**gen.to_dict(), "max_new_tokens": r.style_tokens}}
        registry = self.ctx.registry
        model_shas = hashlib.sha256("+".join(str(model_sha256(registry, m)) for m in models).encode()).hexdigest()
        data_sha = hashlib.sha256("+".join(t[2] for t in texts.values()).encode()).hexdigest()
        key = cache_key("style", model_shas, data_sha, settings)
        if not r.fresh:
            for row in reversed(registry.evaluations(cache_key=key)):
                if row.details.get("task") == "style" and "result" in row.details:
                    self.info(f"cached: style attribution of {', '.join(models)} (computed {row.created_at})")
                    return row.details["result"], True

        # The perplexity cells are ordinary perplexity evaluations (cached one by one).
        cells = {}
        for model in models:
            for name, (text, target, sha) in texts.items():
                cells[(model, name)] = self.perplexity_on(model, text, target, sha)[0]["metrics"]["perplexity"]
        from .style import style_attribution

        self.stage(f"style attribution: {len(models)} models x {len(texts)} datasets")
        loaded = {m: self.load(m) for m in models}
        result = style_attribution(
            loaded, {n: t[0] for n, t in texts.items()}, prompts_per_dataset=r.style_prompts,
            new_tokens=r.style_tokens, seed=r.seed, settings=gen, score=lambda m, d: cells[(m, d)],
            on_progress=self.on_progress, should_stop=self.should_stop,
            context=r.context, stride=r.stride, dtype=r.dtype).to_dict()
        for index, model in enumerate(models):
            row_total = sum(result["confusion"][index]) if result["confusion"] else 0
            own = result["confusion"][index][index] / row_total if row_total else 0.0
            details = {"task": "style", "result": result} if index == 0 else {"task": "style", "part_of": key}
            registry.add_evaluation(model, "style_self_attribution", own, target=",".join(texts),
                                    settings=settings, model_sha256=model_sha256(registry, model),
                                    data_sha256=data_sha, cache_key=key, details=details)
        return result, False


def evaluate(ctx, models: list[str], request: EvalRequest, cache=None,
             on_progress: Callable[[int, int], None] | None = None,
             on_stage: Callable[[str], None] | None = None,
             on_info: Callable[[str], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> dict:
    """Evaluate models on a request. Returns {"results": [per-model report], "style": {...} (if asked)}.

    Per-model report: {"model", "metrics", "settings", "samples", "details", "cached", "model_sha256",
    "data_sha256"}. on_stage(label) announces each computation, on_progress(done, total) follows it;
    on_info(message) gets notes such as "cached: ..."; should_stop() cancels (EvaluationCancelled)."""
    request.validate()
    if not models:
        raise WorkbenchError("name at least one model to evaluate")
    for name in models:
        ctx.registry.get_model(name)
    runner = _Runner(ctx, request, cache, on_progress, on_stage, on_info, should_stop)
    results = []
    for model in models:
        report: dict[str, Any] = {"model": model, "metrics": {}, "settings": {}, "samples": {}, "details": {},
                                  "cached": True, "model_sha256": model_sha256(ctx.registry, model),
                                  "data_sha256": {}}
        cached_flags = []
        if "ppl" in request.metrics:
            result, cached = runner.ppl(model)
            report["metrics"].update(result["metrics"])
            report["settings"]["ppl"] = {**runner.ppl_settings(model), "batch_size": request.batch_size,
                                         "target": _target(request)}
            report["details"]["ppl"] = result["details"]
            cached_flags.append(cached)
        if any(task in request.metrics for task in REF_TASKS):
            result, cached = runner.refs(model)
            for task, metric in (("f1", "f1"), ("exact-match", "exact_match")):
                if task in request.metrics:
                    report["metrics"][metric] = result["metrics"][metric]
            if "bleu" in request.metrics:
                report["metrics"]["bleu"] = result["metrics"]["bleu"]
                report["metrics"]["bleu_signature"] = result["details"]["bleu_signature"]
            if "rouge" in request.metrics:
                report["metrics"].update({k: result["metrics"][k] for k in ROUGE_METRICS})
            report["settings"]["refs"] = {"file": request.refs, "generation": request_generation(request),
                                          **refs_prompting(ctx.registry, model, request.chat_template)}
            report["samples"]["refs"] = result["details"]["samples"]
            cached_flags.append(cached)
        if "x-ratio" in request.metrics:
            result, cached = runner.xratio(model)
            report["metrics"]["x_ratio"] = result["metrics"]["x_ratio"]
            details = dict(result["details"])
            report["samples"]["x_ratio"] = details.pop("samples")
            report["details"]["x_ratio"] = details
            report["settings"]["x_ratio"] = {"letter": request.letter, "tokens": request.tokens,
                                             "prompts": request.prompts or None, "samples": request.samples,
                                             "seed": request.seed}
            cached_flags.append(cached)
        report["cached"] = bool(cached_flags) and all(cached_flags)
        results.append(report)
    out: dict[str, Any] = {"results": results}
    if "style" in request.metrics:
        style, cached = runner.style(list(models))
        style["cached"] = cached
        out["style"] = style
        for index, report in enumerate(results):
            row = style["confusion"][index] if style["confusion"] else []
            report["metrics"]["style_self_attribution"] = row[index] / sum(row) if row and sum(row) else 0.0
            report["cached"] = report["cached"] and cached if report["settings"] else cached
    return out


def refs_prompting(registry, model: str, mode: str) -> dict:
    """How BLEU/ROUGE prompts reach `model`: through its chat template ("on") or as plain text ("off").
    auto = on for chat models. Recorded in the evaluation's settings (and so in its cache key)."""
    from ..templates import template_source

    record = registry.get_model(model)
    source = template_source(record.path)
    if mode == "on" and source is None:
        raise WorkbenchError(f"--chat-template on: '{model}' has no chat template (use auto or off)")
    resolved = "on" if (mode == "on" or (mode == "auto" and source)) else "off"
    return {"chat_template": resolved, "template_source": source if resolved == "on" else None}


def _target(request: EvalRequest) -> str:
    return f"file:{request.file}" if request.file else f"{request.data[0]}:{request.split}"


def request_generation(request: EvalRequest) -> dict:
    from ..generation import GenerationSettings

    return GenerationSettings.from_dict(request.generation).to_dict()


# ---------------------------------------------------------------- stored results


def list_evaluations(ctx, model: str | None = None) -> list[dict]:
    """Stored evaluation rows (newest last), without the bulky details."""
    return [{"id": e.id, "model": e.model, "metric": e.metric, "value": e.value, "target": e.target,
             "settings": e.settings, "model_sha256": e.model_sha256, "data_sha256": e.data_sha256,
             "created_at": e.created_at} for e in ctx.registry.evaluations(model=model)]


def latest_values(ctx, model: str) -> dict[tuple[str, str], Any]:
    """{(metric, target): latest EvaluationRecord} of a model."""
    latest = {}
    for record in ctx.registry.evaluations(model=model):
        latest[(record.metric, record.target or "")] = record
    return latest


def compare(ctx, a: str, b: str) -> list[dict]:
    """Stored results of two models side by side: one row per (metric, target) either has."""
    from .gates import regression

    ctx.registry.get_model(a)
    ctx.registry.get_model(b)
    left, right = latest_values(ctx, a), latest_values(ctx, b)
    rows = []
    for key in sorted(set(left) | set(right)):
        metric, target = key
        ra, rb = left.get(key), right.get(key)
        row = {"metric": metric, "target": target, "a": ra.value if ra else None, "b": rb.value if rb else None,
               "delta": None, "delta_pct": None, "better": None,
               "same_settings": bool(ra and rb and ra.settings == rb.settings)}
        if ra and rb:
            row["delta"] = rb.value - ra.value
            row["delta_pct"] = (rb.value - ra.value) / abs(ra.value) * 100 if ra.value else None
            worse = regression(metric, rb.value, ra.value)
            if worse is not None:
                row["better"] = a if worse > 0 else (b if worse < 0 else "equal")
        rows.append(row)
    return rows
