"""Evaluation requests over registered models: compute, store in the registry, answer repeats from it.

Every result is stored (Registry.add_evaluation, one row per metric) with its settings, the sha256 of the
model's weights and of the data it was computed on, and a cache key over (task, those hashes, settings).
The same request on the same hashes is answered from the registry (result["cached"] is True and on_info
says so) unless `fresh`. The CLI (`workbench eval`) and the TUI both call `evaluate`, which assembles the
per-model reports; beside it, request.py holds EvalRequest and the metric names, runner.py computes and
caches each task, and stored_results.py reads stored results back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import WorkbenchError
from .request import REF_TASKS, ROUGE_METRICS, EvalRequest, request_generation
from .runner import EvalRunner, model_sha256, refs_prompting


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
    runner = EvalRunner(ctx, request, cache, on_progress, on_stage, on_info, should_stop)
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


def _target(request: EvalRequest) -> str:
    return f"file:{request.file}" if request.file else f"{request.data[0]}:{request.split}"
