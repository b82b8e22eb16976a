"""Fresh, randomly initialised models from a config, and the tiny starter model."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import WorkbenchError
from ..faults import require_space
from ..registry import ModelRecord, Registry
from ..staging import delete_folder
from ..workspace import Workspace
from .folders import _register_folder, staged_folder
from .names import STARTER_MODEL, STARTER_SHAPE, ModelShape, one_line, validate_name
from .tokenizer import load_tokenizer, quiet_transformers, write_gpt2_tokenizer_files


# Offered in error messages and pickers; `models new --arch` takes any causal LM type transformers knows.
SUGGESTED_ARCHITECTURES = ("gpt-neo", "gpt2", "llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma2",
                           "gemma3_text", "gpt-neox")
GPT2_VOCAB = 50257
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "tokenizer.model", "added_tokens.json", "generation_config.json")


def _check_shape(shape: ModelShape) -> None:
    for label, value in (("layers", shape.layers), ("hidden", shape.hidden), ("heads", shape.heads),
                         ("context", shape.context)):
        if value < 1:
            raise WorkbenchError(f"--{label} must be at least 1 (got {value})")
    if shape.hidden % shape.heads:
        raise WorkbenchError(f"--hidden ({shape.hidden}) must be a multiple of --heads ({shape.heads})")


def build_config(arch: str, shape: ModelShape, vocab_size: int = GPT2_VOCAB, special_ids: dict | None = None):
    """A config of any causal LM type transformers knows (`gpt-neo` spelt either way), sized by `shape`.

    --layers/--hidden/--heads/--context set the standard config names (num_hidden_layers, hidden_size,
    num_attention_heads, max_position_embeddings), which each config's attribute_map translates to its
    own (GPT-2's n_layer, n_embd, ...). Sizes derived from them: 4x hidden MLP, as many key/value heads
    as heads, head_dim = hidden / heads."""
    _check_shape(shape)
    model_type = arch.replace("-", "_")
    if model_type == "gpt_neo":  # its attention_types list must cover every layer
        from transformers import GPTNeoConfig

        return GPTNeoConfig(
            num_layers=shape.layers, hidden_size=shape.hidden, num_heads=shape.heads,
            max_position_embeddings=shape.context, vocab_size=vocab_size, window_size=shape.context,
            attention_types=[[["global", "local"], max(1, shape.layers // 2)]] if shape.layers % 2 == 0
            else [[["global"], shape.layers]], **(special_ids or {}),
        )
    config_class = _causal_config_class(arch, model_type)
    default = config_class()
    wanted = {"num_hidden_layers": shape.layers, "hidden_size": shape.hidden,
              "num_attention_heads": shape.heads, "max_position_embeddings": shape.context}
    missing = [key for key in wanted if key != "max_position_embeddings" and not hasattr(default, key)]
    if missing:
        raise WorkbenchError(f"architecture '{arch}' has no {', '.join(missing)} to set from --layers/--hidden/"
                             f"--heads; try one of {', '.join(SUGGESTED_ARCHITECTURES)}")
    derived = {"intermediate_size": 4 * shape.hidden, "num_key_value_heads": shape.heads,
               "head_dim": shape.hidden // shape.heads, "vocab_size": vocab_size, **(special_ids or {})}
    kwargs = {key: value for key, value in {**wanted, **derived}.items() if hasattr(default, key)}
    names = getattr(config_class, "attribute_map", {}) or {}
    try:
        return config_class(**{names.get(key, key): value for key, value in kwargs.items()})
    except Exception as error:  # noqa: BLE001 - each config validates its own way
        raise WorkbenchError(f"cannot build a '{arch}' config of this shape: {one_line(error)}") from None


def _causal_config_class(arch: str, model_type: str):
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    suggestions = ", ".join(SUGGESTED_ARCHITECTURES)
    if model_type not in CONFIG_MAPPING:
        raise WorkbenchError(f"unknown architecture '{arch}': use a transformers model type such as {suggestions}")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise WorkbenchError(f"'{arch}' is not a causal language model in transformers; use one such as "
                             f"{suggestions}")
    return CONFIG_MAPPING[model_type]


def _tokenizer_source(registry: Registry, tokenizer: str | None):
    """(folder to copy tokenizer files from or None for GPT-2, vocabulary size, special token ids)."""
    if tokenizer is None:
        return None, GPT2_VOCAB, {"bos_token_id": 50256, "eos_token_id": 50256}
    record = registry.get_model(tokenizer)
    folder = Path(record.path)
    if not any((folder / name).exists() for name in ("tokenizer.json", "vocab.json", "tokenizer.model")):
        raise WorkbenchError(f"'{tokenizer}' has no tokenizer files in {folder}")
    loaded = load_tokenizer(folder)
    ids = {f"{kind}_token_id": getattr(loaded, f"{kind}_token_id") for kind in ("bos", "eos", "pad")}
    return folder, len(loaded), {key: value for key, value in ids.items() if value is not None}


def create_model(ws: Workspace, registry: Registry, name: str, arch: str = "gpt-neo",
                 shape: ModelShape = STARTER_SHAPE, seed: int = 0, tokenizer: str | None = None) -> ModelRecord:
    """A fresh, randomly initialised model from a config, with the GPT-2 tokenizer or the tokenizer (and
    chat template and generation config) of the registered model `tokenizer`."""
    validate_name(name)
    if not 0 <= seed < 2**64:
        raise WorkbenchError(f"--seed must be between 0 and 2**64 - 1 (got {seed})")
    if registry.find_model(name):
        raise WorkbenchError(f"a model named '{name}' is already registered")
    source, vocab_size, special_ids = _tokenizer_source(registry, tokenizer)
    config = build_config(arch, shape, vocab_size, special_ids)
    check_fits_in_memory(shape, vocab_size)
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        if source is None:
            write_gpt2_tokenizer_files(staging)
        else:
            for item in source.iterdir():
                if item.is_file() and (item.name in _TOKENIZER_FILES or item.suffix == ".jinja"):
                    shutil.copy2(item, staging / item.name)
    meta = {"tokenizer_from": tokenizer} if tokenizer else {}
    return register_or_remove(registry, target,
                              lambda: _register_folder(registry, name, target, source="created", meta=meta))


def register_or_remove(registry: Registry, target, register):
    """Register a folder just put in place; if that fails, whatever the reason, remove the folder."""
    try:
        return register()
    except BaseException:
        delete_folder(target, registry.home, "the staged folder")
        raise


def estimated_parameters(shape: ModelShape, vocab: int = GPT2_VOCAB) -> int:
    """GPT-style count: embeddings + 12 h^2 per layer (attention 4 h^2, MLP 8 h^2)."""
    return vocab * shape.hidden + shape.context * shape.hidden + shape.layers * 12 * shape.hidden ** 2


def check_fits_in_memory(shape: ModelShape, vocab: int = GPT2_VOCAB) -> None:
    """Refuse up front a model whose fp32 weights cannot fit in this machine's memory."""
    needed = estimated_parameters(shape, vocab) * 4
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        raise WorkbenchError(f"a model of that shape has about {needed // 4:,} parameters "
                             f"({needed / 1e9:,.1f} GB in fp32), more than the {available / 1e9:,.1f} GB of "
                             "memory available; pick fewer --layers or a smaller --hidden")


def ensure_starter_model(ws: Workspace, registry: Registry) -> ModelRecord | None:
    """Register `tiny-neo` if the workspace does not have it yet (returns it when it was created)."""
    if registry.find_model(STARTER_MODEL):
        return None
    target = ws.model_dir(STARTER_MODEL)
    if target.exists():  # a folder left by an earlier run: adopt it when it is complete
        try:
            return _register_folder(registry, STARTER_MODEL, target, source="created")
        except WorkbenchError:
            shutil.rmtree(target)
    # fp32 weights (saved once, staged beside their place) and the tokenizer files
    require_space(ws.models_dir, estimated_parameters(STARTER_SHAPE) * 4 + (8 << 20),
                  f"the starter model '{STARTER_MODEL}'")
    try:
        return create_model(ws, registry, STARTER_MODEL)
    except WorkbenchError:
        # Another process opening the same new workspace at this moment created it first.
        for _ in range(100):
            if registry.find_model(STARTER_MODEL):
                return None
            time.sleep(0.1)
        raise
