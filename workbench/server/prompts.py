"""What the server feeds a model: chat messages rendered with the model's own template, end tokens.

Kept to two small functions so that they can follow the workbench's one template module
(core/templates.py) without touching the rest of the server.
"""

from __future__ import annotations

import json
from pathlib import Path


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The prompt text of a conversation, ending where the assistant's reply begins."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def end_token_ids(folder: str | Path, tokenizer) -> set[int]:
    """Every end token: generation_config.json's eos_token_id (one or a list) and the tokenizer's EOS."""
    ids: set[int] = set()
    path = Path(folder) / "generation_config.json"
    if path.is_file():
        try:
            value = json.loads(path.read_text()).get("eos_token_id")
        except (OSError, json.JSONDecodeError):
            value = None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
