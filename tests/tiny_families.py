"""Tiny random models of every family the workbench supports, built from configs (a test helper).

Each model has 2 layers, hidden 32, 4 heads (2 key/value heads where the family has grouped-query
attention) and the SmolLM2 chat tokenizer's vocabulary (49,152), saved as a Hugging Face folder together
with that tokenizer and its ChatML template, so every test sees a model that loads like a real one.

The families deliberately differ where the training code must not assume GPT-2: tied and untied heads,
fused projections (phi3's qkv_proj / gate_up_proj, gpt_neox's query_key_value, gpt2's Conv1D c_attn),
Gemma's scaled embeddings and Gemma 2's final logit soft-capping, sliding-window layers (mistral, gemma2,
gemma3_text, gpt_neo's local layers).

Use:
    from tiny_families import FAMILIES, build_tiny_model
    folder = build_tiny_model("qwen3", tmp_path / "qwen3", tokenizer_dir)

or, in a test module, the session-scoped fixture (import both so pytest sees them):
    from tiny_families import family_tokenizer_dir, tiny_family  # noqa: F401  (fixtures)
    def test_x(tiny_family): folder = tiny_family("gemma2")
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma2", "gemma3_text", "gpt_neox",
            "gpt2", "gpt_neo")
# Heads that transform their logits (for the fast-loss tests): Cohere multiplies by logit_scale, Granite
# divides by logits_scaling, Phi(-2) has a biased head.
HEAD_VARIANTS = ("cohere", "granite", "phi")
VOCAB = 49152  # the SmolLM2 tokenizer's vocabulary
HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, CONTEXT = 32, 2, 4, 2, 8, 64, 512
BOS_ID, EOS_ID = 1, 2  # <|im_start|>, <|im_end|> in the SmolLM2 tokenizer

# Which families tie the LM head to the embedding (both kinds must be covered).
TIED = {"llama": True, "qwen2": False, "qwen3": True, "mistral": False, "phi3": False, "gemma": True,
        "gemma2": True, "gemma3_text": True, "gpt_neox": False, "gpt2": True, "gpt_neo": True, "cohere": True,
        "granite": True, "phi": False}


def _llama_like(**extra) -> dict:
    return {"hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "max_position_embeddings": CONTEXT,
            **extra}


def tiny_config_kwargs(family: str) -> dict:
    """The config keyword arguments of one family's tiny model (transformers' model_type names)."""
    sliding = {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"]}
    per_family = {
        "llama": _llama_like(),
        "qwen2": _llama_like(),
        "qwen3": _llama_like(head_dim=HEAD_DIM),
        "mistral": _llama_like(sliding_window=8),
        "phi3": _llama_like(pad_token_id=EOS_ID),
        "gemma": _llama_like(head_dim=HEAD_DIM),
        # Gemma 2 keeps its default final_logit_softcapping (30.0) and attention soft-capping.
        "gemma2": _llama_like(head_dim=HEAD_DIM, query_pre_attn_scalar=HEAD_DIM, **sliding),
        "gemma3_text": _llama_like(head_dim=HEAD_DIM, query_pre_attn_scalar=HEAD_DIM, **sliding),
        "gpt_neox": {"hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
                     "num_attention_heads": HEADS, "max_position_embeddings": CONTEXT},
        "cohere": _llama_like(logit_scale=0.0625),
        "granite": _llama_like(logits_scaling=4.0),
        "phi": _llama_like(partial_rotary_factor=0.5),
        "gpt2": {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS, "n_positions": CONTEXT},
        "gpt_neo": {"hidden_size": HIDDEN, "num_layers": LAYERS, "num_heads": HEADS,
                    "max_position_embeddings": CONTEXT, "window_size": 8,
                    "attention_types": [[["global", "local"], 1]]},
    }
    if family not in per_family:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return {**per_family[family], "vocab_size": VOCAB, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
            "tie_word_embeddings": TIED[family]}


def tiny_config(family: str):
    from transformers import AutoConfig

    return AutoConfig.for_model(family, **tiny_config_kwargs(family))


def build_tiny_model(family: str, folder: Path, tokenizer_dir: Path, seed: int = 0, dtype=None) -> Path:
    """Save a random tiny model of `family` (fp32, or `dtype`) with the tokenizer files of tokenizer_dir."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family))
    with torch.no_grad():  # zero-initialised biases and Gemma's zero-centred norms get values, so a
        # test notices when a bias or a norm is dropped
        for param in model.parameters():
            if param.dim() == 1 and param.abs().sum() == 0:
                param.normal_(0.0, 0.02)
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = BOS_ID, EOS_ID
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    copy_tokenizer_files(Path(tokenizer_dir), folder)
    return folder


def copy_tokenizer_files(source: Path, target: Path) -> None:
    """The tokenizer, its config and chat template (never the source's model weights or config)."""
    for path in Path(source).iterdir():
        if path.is_file() and (path.name.startswith(("tokenizer", "special_tokens")) or path.suffix == ".jinja"
                               or path.name in ("vocab.json", "merges.txt")):
            shutil.copy2(path, target / path.name)


@pytest.fixture(scope="session")
def family_tokenizer_dir(chat_tokenizer_dir) -> Path:
    """The SmolLM2 chat tokenizer folder (conftest's chat_tokenizer_dir, read-only)."""
    return Path(chat_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_family(family_tokenizer_dir, tmp_path_factory):
    """tiny_family(family) -> folder of that family's tiny model, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, root / family, family_tokenizer_dir)
        return built[family]

    return get
