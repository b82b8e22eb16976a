"""What each step kind accepts, checked when a recipe is read (before anything runs or loads)."""

from __future__ import annotations

from typing import Any

from ..errors import WorkbenchError

GENERATION_KEYS = {"max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
                   "seed"}
EVAL_METRICS = ("ppl", "x-ratio", "style")
ALLOWED = {
    "data": {"books", "instructions"},
    "model": {"name", "arch", "layers", "hidden", "heads", "context", "seed", "starter"},
    "eval": {"models", "metrics", "data", "split", "prompts", "prompt_tokens", "samples", "tokens", "letter",
             "seed", "own", "style_prompts", "style_tokens", "batch_size", "context", "instructions",
             "generation", "limit_chars"},
    "generate": {"models", "prompts", "settings", "chat", "title"},
    "dialogue": {"models", "opening", "turns", "settings", "title"},
}


def check_step(kind: str, params: dict) -> None:
    """Raise WorkbenchError (one line, no file name) when a step's settings cannot work."""
    if kind == "train":
        train_config(params)
        return
    _keys(params, ALLOWED[kind])
    {"data": _data, "model": _model, "eval": _eval, "generate": _generate, "dialogue": _dialogue}[kind](params)


def train_config(params: dict):
    """The TrainConfig of a train step (keys are `workbench train`'s long flag names)."""
    from ..settings_file import config_fields
    from ..training.config import TrainConfig

    fields = config_fields(params, "train")
    for needed, flag in (("base_model", "model"), ("out", "out")):
        if not fields.get(needed):
            raise WorkbenchError(f"a train step needs '{flag}'")
    fields.setdefault("dataset", None)
    try:
        config = TrainConfig.from_dict(fields)
    except TypeError as error:
        raise WorkbenchError(f"bad training settings ({error})") from None
    config.validate_values()
    return config


def names(value: Any, what: str) -> list[str]:
    """A name or a list of names, as a list of non-empty strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise WorkbenchError(f"'{what}' must be a name or a list of names")
    return items


def generation_variants(params: dict) -> list[dict]:
    """[{"label", GenerationSettings fields...}] from `settings` (one mapping or a list of them)."""
    from ..generation import GenerationSettings

    raw = params.get("settings") or {}
    variants = raw if isinstance(raw, list) else [raw]
    out = []
    for index, variant in enumerate(variants, 1):
        if not isinstance(variant, dict):
            raise WorkbenchError("'settings' must be a mapping of generation settings, or a list of them")
        _keys(variant, GENERATION_KEYS | {"label"}, f"settings {index}")
        settings = {k: v for k, v in variant.items() if k != "label"}
        try:
            GenerationSettings.from_dict(settings).validate()
        except TypeError as error:
            raise WorkbenchError(f"settings {index}: {error}") from None
        out.append({"label": str(variant.get("label") or _label(settings)), **settings})
    return out


def _label(settings: dict) -> str:
    if not settings.get("do_sample"):
        return "greedy"
    parts = [f"{k}={settings[k]}" for k in ("temperature", "top_k", "top_p") if k in settings]
    return "sample " + " ".join(parts) if parts else "sample"


def _keys(params: dict, allowed: set[str], where: str = "") -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        prefix = f"{where}: " if where else ""
        raise WorkbenchError(f"{prefix}unknown setting '{extra[0]}' (known: {', '.join(sorted(allowed))})")


def _data(params: dict) -> None:
    if not params:
        raise WorkbenchError("a data step needs 'books' and/or 'instructions'")
    if "books" in params:
        names(params["books"], "books")
    if "instructions" in params:
        spec = params["instructions"]
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise WorkbenchError("'instructions' must be a mapping with 'name' (and optionally 'records', 'seed')")
        _keys(spec, {"name", "records", "seed"}, "instructions")
        if not isinstance(spec.get("records", 240), int) or spec.get("records", 240) < 200:
            raise WorkbenchError("instructions: 'records' must be an integer of at least 200")


def _model(params: dict) -> None:
    if "starter" in params:
        if params["starter"] != "smollm2" or len(params) > 1:
            raise WorkbenchError("'starter' takes the chat starter's name, smollm2, and nothing beside it")
        return
    if not isinstance(params.get("name"), str):
        raise WorkbenchError("a model step needs 'name' (a new model) or 'starter: smollm2'")
    if params.get("arch", "gpt2") not in ("gpt2", "gpt-neo", "llama"):
        raise WorkbenchError(f"unknown arch {params.get('arch')!r}: choose gpt2, gpt-neo or llama")
    for key in ("layers", "hidden", "heads", "context"):
        if key in params and (not isinstance(params[key], int) or params[key] < 1):
            raise WorkbenchError(f"'{key}' must be a positive integer")


def _eval(params: dict) -> None:
    names(params.get("models"), "models")
    metrics = params.get("metrics") or []
    if not isinstance(metrics, list) or not metrics or any(m not in EVAL_METRICS for m in metrics):
        raise WorkbenchError(f"'metrics' must be a list of {', '.join(EVAL_METRICS)}")
    if ("ppl" in metrics or "style" in metrics) and not (params.get("data") or params.get("instructions")):
        raise WorkbenchError("perplexity and style need 'data' (dataset names)")
    if "data" in params:
        names(params["data"], "data")
    lengths = params.get("prompt_tokens", 8)
    lengths = lengths if isinstance(lengths, list) else [lengths]
    if not lengths or not all(isinstance(n, int) and n >= 1 for n in lengths):
        raise WorkbenchError("'prompt_tokens' must be a positive integer or a list of them")
    if "limit_chars" in params and (not isinstance(params["limit_chars"], int) or params["limit_chars"] < 100):
        raise WorkbenchError("'limit_chars' must be an integer of at least 100")
    if "own" in params and not isinstance(params["own"], dict):
        raise WorkbenchError("'own' must map each model to its own dataset")
    if "prompts" in params and not isinstance(params["prompts"], list):
        raise WorkbenchError("'prompts' must be a list of texts")
    if "generation" in params:
        generation_variants({"settings": params["generation"]})


def _generate(params: dict) -> None:
    names(params.get("models"), "models")
    prompts = params.get("prompts")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise WorkbenchError("'prompts' must be a non-empty list of texts")
    generation_variants(params)


def _dialogue(params: dict) -> None:
    models = names(params.get("models"), "models")
    if len(models) != 2:
        raise WorkbenchError("a dialogue step needs exactly two 'models'")
    if not isinstance(params.get("opening"), str) or not params["opening"].strip():
        raise WorkbenchError("a dialogue step needs an 'opening' line")
    turns = params.get("turns", 6)
    if not isinstance(turns, int) or turns < 1:
        raise WorkbenchError("'turns' must be a positive integer")
    if len(generation_variants(params)) != 1:
        raise WorkbenchError("a dialogue takes one 'settings' mapping")
