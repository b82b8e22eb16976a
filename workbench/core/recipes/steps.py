"""Each step kind as the ordinary workbench action it stands for: datasets are added as `data add` does,
models are created as `models new` does, training is a registered background job (as `train --detach`),
evaluations are stored by the evaluation service, generations and dialogues are saved sessions.

A step returns a plain dict (its results, which figures point into) and reports through `env`:
env.note(text), env.progress(done, total, text), env.should_stop(), env.cache (loaded models)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from .checks import generation_variants, names, train_config


def run_step(ctx, kind: str, params: dict, env) -> dict:
    handler = {"data": run_data, "model": run_model, "train": run_train, "eval": run_eval,
               "generate": run_generate, "dialogue": run_dialogue}[kind]
    return handler(ctx, params, env)


# ---------------------------------------------------------------- data and models


def run_data(ctx, params: dict, env) -> dict:
    from .books import ensure_book

    out: dict[str, Any] = {}
    for name in names(params.get("books", []) or [], "books") if params.get("books") else []:
        record, how = ensure_book(ctx, name)
        env.note(f"dataset '{name}': {how} ({record.tokens:,} tokens)")
        out[name] = {"tokens": record.tokens, "splits": record.splits, "how": how}
    if params.get("instructions"):
        spec = params["instructions"]
        record, how = _ensure_instructions(ctx, spec["name"], int(spec.get("records", 240)),
                                           int(spec.get("seed", 0)), env)
        env.note(f"dataset '{record.name}': {how} ({record.splits})")
        out[record.name] = {"records": sum(record.splits.values()), "splits": record.splits, "how": how}
    return out


def _ensure_instructions(ctx, name: str, count: int, seed: int, env):
    from ..data import add_dataset
    from .instructions import write_instructions

    record = ctx.registry.find_dataset(name)
    if record is not None:
        if record.kind != "instructions":
            raise WorkbenchError(f"dataset '{name}' holds {record.kind}, not instructions")
        return record, "registered"
    file = write_instructions(env.files / f"{name}.jsonl", count, seed)
    return add_dataset(ctx, name, file, kind="instructions", seed=seed), f"written ({count} records) and added"


def run_model(ctx, params: dict, env) -> dict:
    """A new model from a config (as `models new`), or the chat starter imported as `init` does."""
    from ..models import ModelShape, create_model, ensure_chat_starter

    if params.get("starter"):
        record, why = ensure_chat_starter(ctx.ws, ctx.registry, progress=env.note)
        if why:
            raise WorkbenchError(why)
        env.note(f"imported the chat starter '{record.name}'" if record else "the chat starter is registered")
        return {"model": params["starter"], "created": record is not None}
    name = params["name"]
    shape = ModelShape(**{k: params[k] for k in ("layers", "hidden", "heads", "context") if k in params})
    existing = ctx.registry.find_model(name)
    if existing is not None:
        env.note(f"model '{name}' is already registered: kept")
        return {"model": name, "params": existing.params, "created": False}
    record = create_model(ctx.ws, ctx.registry, name, arch=params.get("arch", "gpt2"), shape=shape,
                          seed=int(params.get("seed", 0)))
    env.note(f"created '{name}' ({record.arch}, {record.params:,} parameters)")
    return {"model": name, "params": record.params, "created": True}


# ---------------------------------------------------------------- training


def run_train(ctx, params: dict, env) -> dict:
    from ..jobs import cancel_job, follow_metrics, launch_job, wait_job

    config = train_config(params)
    existing = ctx.registry.find_model(config.out)
    if existing is not None:
        if (existing.meta or {}).get("settings") == config.to_dict():
            env.note(f"'{config.out}' was already trained with these settings: kept")
            return _train_result(existing, None, 0.0)
        raise WorkbenchError(f"a model named '{config.out}' is already registered with other settings; "
                             f"remove it (workbench models rm {config.out} --delete-files) and run again")
    began = time.monotonic()
    job = launch_job(ctx, config)
    env.note(f"job {job.id} trains '{config.out}' from '{config.base_model}' ({config.steps} steps)")
    env.progress(0, config.steps, "starting")
    for row in follow_metrics(ctx, job.id):
        if row.split == "train":
            env.progress(row.step, config.steps, f"loss {row.loss:.4f}")
        if env.should_stop():
            cancel_job(ctx, job.id)
            raise WorkbenchError(f"stopped: job {job.id} was cancelled (a checkpoint is kept)")
    job = wait_job(ctx, job.id)
    if job.status != "completed":
        detail = (job.error or "").strip().splitlines()[-1:] or [f"see `workbench jobs logs {job.id}`"]
        raise WorkbenchError(f"training job {job.id} ended {job.status}: {detail[0]}")
    return _train_result(ctx.registry.get_model(config.out), job.id, time.monotonic() - began)


def _train_result(record, job_id: int | None, seconds: float) -> dict:
    meta = record.meta or {}
    return {"model": record.name, "job": job_id if job_id is not None else record.job_id,
            "final_train_loss": meta.get("final_train_loss"), "final_val_loss": meta.get("final_val_loss"),
            "val_perplexity": meta.get("val_perplexity"), "steps": meta.get("steps"),
            "seconds": round(seconds, 1), "settings": meta.get("settings", {})}


# ---------------------------------------------------------------- evaluation


def run_eval(ctx, params: dict, env) -> dict:
    from ..evaluation.request import EvalRequest
    from ..evaluation.service import evaluate

    models = names(params["models"], "models")
    base = {k: params[k] for k in ("split", "letter", "tokens", "samples", "seed", "style_prompts",
                                   "style_tokens", "batch_size", "context") if k in params}
    if "generation" in params:
        variant = generation_variants({"settings": params["generation"]})[0]
        base["generation"] = {k: v for k, v in variant.items() if k != "label"}
    hooks = {"cache": env.cache, "on_progress": lambda d, t: env.progress(d, t, ""),
             "on_stage": env.note, "on_info": env.note, "should_stop": env.should_stop}
    out: dict[str, Any] = {}
    metrics = params["metrics"]
    if "ppl" in metrics:
        targets = {name: _ppl_target(ctx, name, params, env)
                   for name in (names(params["data"], "data") if "data" in params else [])}
        if params.get("instructions"):
            file = _render_instructions(ctx, params["instructions"], params.get("split", "test"), env)
            targets[f"{params['instructions']}:rendered"] = {"file": str(file)}
        out["ppl"] = {m: {} for m in models}
        for label, target in targets.items():
            result = evaluate(ctx, models, EvalRequest(metrics=["ppl"], **target, **base), **hooks)
            for report in result["results"]:
                out["ppl"][report["model"]][label] = report["metrics"]["perplexity"]
        if params.get("instructions"):
            _answers_ppl(ctx, models, params["instructions"], params.get("split", "test"), env, out["ppl"])
        if params.get("own"):
            out["own_lower"] = _own_lower(out["ppl"], params["own"])
            out["separates"] = all(out["own_lower"].values())
    if "x-ratio" in metrics:
        out["x_ratio"] = {m: {} for m in models}
        variants = [("sentence", {"prompts": params["prompts"]})] if params.get("prompts") else []
        lengths = params.get("prompt_tokens", 8)
        variants += [(f"random-{n}", {"prompt_tokens": n}) for n in (lengths if isinstance(lengths, list)
                                                                    else [lengths])]
        for label, extra in variants:
            result = evaluate(ctx, models, EvalRequest(metrics=["x-ratio"], **extra, **base), **hooks)
            for report in result["results"]:
                out["x_ratio"][report["model"]][label] = report["metrics"]["x_ratio"]
        for model, by_prompt in out["x_ratio"].items():
            by_prompt["lowest"] = min(by_prompt.values())
    if "style" in metrics:
        result = evaluate(ctx, models, EvalRequest(metrics=["style"], data=names(params["data"], "data"),
                                                   **base), **hooks)
        style = result["style"]
        out["style"] = {k: style.get(k) for k in ("models", "datasets", "confusion", "accuracy",
                                                  "confusion_calibrated", "accuracy_calibrated",
                                                  "best_model_per_dataset")}
        out["style_self_attribution"] = {r["model"]: r["metrics"].get("style_self_attribution")
                                         for r in result["results"]}
    return out


def _ppl_target(ctx, name: str, params: dict, env) -> dict:
    """The dataset's split, or with `limit_chars` its first N characters (cut at a line start) as a file:
    a quick run's perplexity on a sample of the split."""
    limit = params.get("limit_chars")
    if not limit:
        return {"data": [name]}
    from ..data import read_split_text

    split = params.get("split", "test")
    text = read_split_text(ctx, name, split)
    if len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        text = text[: cut if cut > limit // 2 else limit]
    file = env.files / f"{name}-{split}-{limit}.txt"
    file.write_text(text, encoding="utf-8")
    return {"file": str(file)}


def _own_lower(matrix: dict, own: dict) -> dict[str, bool]:
    """On its own dataset, each model is less perplexed than every other model of the matrix."""
    verdict = {}
    for model, dataset in own.items():
        if dataset not in matrix.get(model, {}):
            raise WorkbenchError(f"'own' names {model} -> {dataset}, which the perplexity matrix lacks")
        mine = matrix[model][dataset]
        verdict[model] = all(mine < row[dataset] for other, row in matrix.items() if other != model)
    return verdict


def _answers_ppl(ctx, models: list[str], dataset: str, split: str, env, table: dict) -> None:
    """Each model's perplexity on the answers of the held-out records (what instruction tuning trains)."""
    from ..data import read_instructions
    from ..evaluation.answer_perplexity import answer_perplexity

    records = read_instructions(ctx, dataset, split)
    for model in models:
        env.note(f"answer perplexity of {model} on {dataset} ({split})")
        loaded = env.cache.get(ctx.registry, model)
        table[model][f"{dataset}:answers"] = answer_perplexity(loaded, records,
                                                               ctx.registry.get_model(model).path)["perplexity"]


def _render_instructions(ctx, dataset: str, split: str, env) -> Path:
    """An instruction split as the text a GPT-2-style model is instruction-tuned on (the default ChatML
    template that instruction tuning gives and ships to models without one), for perplexity."""
    from ..data import read_instructions
    from ..data_tokens import gpt2_tokenizer
    from ..templates import DEFAULT_TEMPLATE, render

    tokenizer = gpt2_tokenizer(ctx)
    records = read_instructions(ctx, dataset, split)
    file = env.files / f"{dataset}-{split}.txt"
    file.write_text("".join(render(tokenizer, r["messages"], DEFAULT_TEMPLATE) for r in records),
                    encoding="utf-8")
    return file


# ---------------------------------------------------------------- generation and dialogue


def chat_or_plain_prompt(loaded, text: str) -> str:
    """The prompt a user's message becomes: rendered by the model's chat template when it has one
    (instruction-tuned models ship theirs), else the plain text."""
    from ..chat import is_chat_model, render_prompt

    return render_prompt(loaded, [{"role": "user", "content": text}]) if is_chat_model(loaded) else text


def run_generate(ctx, params: dict, env) -> dict:
    from ..chat import is_chat_model
    from ..generation import GenerationSettings, generate
    from ..sessions import Session, save_session

    models = names(params["models"], "models")
    prompts = list(params["prompts"])
    variants = generation_variants(params)
    session = Session(kind="generation", models=models,
                      settings={"variants": variants, "chat": bool(params.get("chat"))},
                      title=str(params.get("title") or prompts[0])[:60])
    outputs = []
    total, done = len(models) * len(variants), 0
    for model in models:
        loaded = env.cache.get(ctx.registry, model)
        templated = bool(params.get("chat")) and is_chat_model(loaded)
        rendered = [chat_or_plain_prompt(loaded, p) for p in prompts] if templated else prompts
        for variant in variants:
            settings = GenerationSettings.from_dict(variant).validate()
            results = generate(loaded, rendered, settings, warn=env.note, templated=templated)
            for prompt, result in zip(prompts, results):
                session.add("prompt", prompt)
                session.add(variant["label"], result.text.strip(), model=model)
                outputs.append({"model": model, "settings": variant["label"], "prompt": prompt,
                                "text": result.text.strip()})
            done += 1
            env.progress(done, total, f"{model}: {variant['label']}")
    record = save_session(ctx, session)
    env.note(f"saved session {record.id} ({len(outputs)} generations)")
    return {"session": record.id, "distinct": _distinct_words(outputs), "outputs": outputs}


def _distinct_words(outputs: list[dict]) -> dict[str, float]:
    """Per settings label: distinct words / words over its outputs (how much a setting repeats itself)."""
    words: dict[str, list[str]] = {}
    for item in outputs:
        words.setdefault(item["settings"], []).extend(item["text"].lower().split())
    return {label: round(len(set(w)) / len(w), 4) if w else 0.0 for label, w in words.items()}


def run_dialogue(ctx, params: dict, env) -> dict:
    from ..chat import run_dialogue as dialogue
    from ..generation import GenerationSettings
    from ..sessions import Session, save_session

    models = names(params["models"], "models")
    turns = int(params.get("turns", 6))
    variant = generation_variants(params)[0]
    settings = GenerationSettings.from_dict(variant).validate()
    loaded = tuple(env.cache.get(ctx.registry, m) for m in models)
    session = Session(kind="dialogue", models=models, settings=settings.to_dict(),
                      title=str(params.get("title") or params["opening"])[:60])
    session.add("opening", params["opening"].strip())
    for index, turn in enumerate(dialogue(loaded, params["opening"], turns, settings, warn=env.note), 1):
        session.add(turn.speaker, turn.text, model=turn.model)
        env.progress(index, turns, f"{turn.model}: {turn.text[:40]}")
    record = save_session(ctx, session)
    env.note(f"saved session {record.id} ({turns} turns)")
    return {"session": record.id, "turns": [{"speaker": t.speaker, "model": t.model, "text": t.text}
                                            for t in session.turns]}
