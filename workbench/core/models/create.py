"""Fresh, randomly initialised models from a config, and the tiny starter model."""

from __future__ import annotations

import shutil

from ..errors import WorkbenchError
from ..registry import ModelRecord, Registry
from ..workspace import Workspace
from .folders import _register_folder, staged_folder
from .names import ARCHITECTURES, STARTER_MODEL, STARTER_SHAPE, ModelShape, validate_name
from .tokenizer import quiet_transformers, write_gpt2_tokenizer_files


def build_config(arch: str, shape: ModelShape):
    from transformers import GPT2Config, GPTNeoConfig

    if arch not in ARCHITECTURES:
        raise WorkbenchError(f"unknown architecture '{arch}': choose one of {', '.join(ARCHITECTURES)}")
    for label, value in (("layers", shape.layers), ("hidden", shape.hidden), ("heads", shape.heads),
                         ("context", shape.context)):
        if value < 1:
            raise WorkbenchError(f"--{label} must be at least 1 (got {value})")
    if shape.hidden % shape.heads:
        raise WorkbenchError(f"--hidden ({shape.hidden}) must be a multiple of --heads ({shape.heads})")
    if arch == "gpt2":
        return GPT2Config(n_layer=shape.layers, n_embd=shape.hidden, n_head=shape.heads,
                          n_positions=shape.context, vocab_size=50257)
    return GPTNeoConfig(
        num_layers=shape.layers, hidden_size=shape.hidden, num_heads=shape.heads,
        max_position_embeddings=shape.context, vocab_size=50257, window_size=shape.context,
        attention_types=[[["global", "local"], max(1, shape.layers // 2)]] if shape.layers % 2 == 0
        else [[["global"], shape.layers]],
    )


def create_model(ws: Workspace, registry: Registry, name: str, arch: str = "gpt-neo",
                 shape: ModelShape = STARTER_SHAPE, seed: int = 0) -> ModelRecord:
    """A fresh, randomly initialised model from a config, with the GPT-2 tokenizer."""
    validate_name(name)
    if registry.find_model(name):
        raise WorkbenchError(f"a model named '{name}' is already registered")
    config = build_config(arch, shape)
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    target = ws.model_dir(name)
    with staged_folder(target) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        write_gpt2_tokenizer_files(staging)
    return _register_folder(registry, name, target, source="created")


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
    return create_model(ws, registry, STARTER_MODEL)
