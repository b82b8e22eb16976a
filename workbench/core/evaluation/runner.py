"""One evaluation call at work: EvalRunner loads models through a shared cache, reads the target text,
computes each task (perplexity, reference metrics, x-ratio, style attribution) and stores every result in
the registry under a cache key over (task, weights' and data's sha256, settings), so a repeat of the same
request on the same hashes is answered from the registry unless `fresh`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import WorkbenchError
from .request import PPL_METRICS, EvalRequest


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


class EvalRunner:
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
