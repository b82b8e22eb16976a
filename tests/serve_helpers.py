"""Shared by the server and export tests: a tiny Llama chat model, a real `workbench serve` process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workbench.server.process import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def make_tiny_chat_model(source_tokenizer: Path, target: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama with the GPT-2 tokenizer and a small chat template."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(source_tokenizer))
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               bos_token_id=tokenizer.bos_token_id)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def workbench_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class ServerProcess(ServeProcess):
    """The product's ServeProcess running this checkout, its log kept beside the workspace."""

    def __init__(self, home: Path, models: list[str], *extra: str):
        super().__init__(home, models, *extra, log_path=home / f"serve-{time.monotonic_ns()}.log",
                         env=workbench_env())
