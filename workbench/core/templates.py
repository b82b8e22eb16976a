"""Chat templates: whether a model is a chat model, rendering a conversation with its template, the
tokens that end a turn, and the assistant-token mask that instruction tuning trains on.

A model is a chat model when its tokenizer carries a chat template (chat_template.jinja,
chat_template.json or tokenizer_config.json's "chat_template"). Models without one continue plain
text. Instruction tuning a model without a template uses DEFAULT_TEMPLATE (the ChatML layout, each turn
closed by the tokenizer's own EOS so that generation stops without adding tokens) and writes it into
the tuned model's tokenizer, so the tuned model ships exactly the template it was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

DEFAULT_SOURCE = "workbench default (ChatML)"
# ChatML (<|im_start|>role ... ) with the tokenizer's EOS as the end of every turn: a base model's
# vocabulary rarely has <|im_end|>, and its EOS is a single token that every runtime already stops on.
DEFAULT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + eos_token + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
ROLES = ("system", "user", "assistant")


def template_source(folder: str | Path) -> str | None:
    """Which file of a model folder holds its chat template (read from the files: no tokenizer load)."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return "chat_template.jinja"
    if (folder / "chat_template.json").is_file():
        return "chat_template.json"
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "tokenizer_config.json" if config.get("chat_template") else None


def describe_mode(source: str | None) -> str:
    """One line for `models show` and the app: chat or plain, and where the template comes from."""
    if source:
        return f"chat (template from {source})"
    return "plain continuation (no chat template)"


@dataclass(frozen=True)
class ChatFormat:
    """How to prompt one model: its template (None: plain continuation), where it came from, end ids."""

    template: str | None
    source: str | None
    end_ids: tuple[int, ...]

    @property
    def is_chat(self) -> bool:
        return self.template is not None

    def describe(self) -> str:
        return describe_mode(self.source)


def tokenizer_template(tokenizer: Any) -> str | None:
    """The tokenizer's own chat template string (a dict of named templates gives its default)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def end_token_ids(tokenizer: Any, generation_eos: int | list[int] | None = None) -> tuple[int, ...]:
    """Every id that ends a reply: generation_config.json's eos_token_id (an int or a list, such as
    Llama 3's <|eot_id|> or Gemma's <end_of_turn>) and the tokenizer's EOS, in that order, once each."""
    ids: list[int] = []
    listed = generation_eos if isinstance(generation_eos, (list, tuple)) else [generation_eos]
    for value in [*listed, tokenizer.eos_token_id]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return tuple(ids)


def generation_eos(folder: str | Path) -> int | list[int] | None:
    """eos_token_id of a folder's generation_config.json (None when absent or unreadable)."""
    try:
        config = json.loads((Path(folder) / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("eos_token_id")


def chat_format(tokenizer: Any, folder: str | Path | None = None, generation_eos_ids=None,
                use_default: bool = False) -> ChatFormat:
    """The model's chat format. `use_default` gives template-less models DEFAULT_TEMPLATE (instruction
    tuning does); otherwise they are plain-continuation models."""
    template = tokenizer_template(tokenizer)
    source = (template_source(folder) if folder else None) or ("tokenizer" if template else None)
    if template is None and use_default:
        if tokenizer.eos_token is None:
            raise WorkbenchError("the tokenizer has no EOS token, so the default chat template cannot end a turn")
        template, source = DEFAULT_TEMPLATE, DEFAULT_SOURCE
    if generation_eos_ids is None and folder is not None:
        generation_eos_ids = generation_eos(folder)
    return ChatFormat(template, source if template else None, end_token_ids(tokenizer, generation_eos_ids))


# ---------------------------------------------------------------- rendering and encoding


def check_messages(messages: list[dict]) -> list[dict]:
    """Messages as the templates expect them: {"role", "content"} with known roles, string content."""
    for n, message in enumerate(messages, 1):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise WorkbenchError(f"message {n}: unknown role {role!r} (use {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise WorkbenchError(f"message {n}: content must be a string")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render(tokenizer: Any, messages: list[dict], template: str, add_generation_prompt: bool = False) -> str:
    """The conversation as the template writes it (the exact text the model sees)."""
    try:
        return tokenizer.apply_chat_template(check_messages(messages), chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except WorkbenchError:
        raise
    except Exception as error:  # noqa: BLE001 - jinja raises TemplateError and template-defined errors
        text = str(error).strip().splitlines()
        raise WorkbenchError(f"the chat template refused the conversation: {text[0] if text else error}") from None


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text with BOS exactly once: a template that writes BOS itself is encoded
    without special tokens; otherwise the tokenizer adds what it is configured to add (or nothing)."""
    return _encode(tokenizer, text)["input_ids"]


def _starts_with_bos(tokenizer: Any, text: str) -> bool:
    bos = tokenizer.bos_token
    return bool(bos) and text.startswith(bos)


def _encode(tokenizer: Any, text: str, offsets: bool = False) -> dict:
    kwargs = {"return_offsets_mapping": True} if offsets else {}
    return tokenizer(text, add_special_tokens=not _starts_with_bos(tokenizer, text), **kwargs)


# ---------------------------------------------------------------- the assistant-token mask


@dataclass
class MaskedRecord:
    """A rendered conversation: its text, token ids, and 1 on every trained (assistant) token."""

    text: str
    ids: list[int]
    mask: list[int]
    offsets: list[tuple[int, int]] = field(default_factory=list)  # each token's characters in `text`

    def segments(self) -> list[tuple[str, bool]]:
        """The text cut into (piece, trained) runs, following the tokens' character offsets."""
        trained = [False] * len(self.text)
        for (a, b), flag in zip(self.offsets, self.mask):
            for i in range(a, b):
                trained[i] = bool(flag)
        runs: list[tuple[str, bool]] = []
        for char, flag in zip(self.text, trained):
            if runs and runs[-1][1] == flag:
                runs[-1] = (runs[-1][0] + char, flag)
            else:
                runs.append((char, flag))
        return runs


def assistant_mask(tokenizer: Any, messages: list[dict], fmt: ChatFormat) -> MaskedRecord:
    """Render the conversation and mark exactly the tokens of each assistant turn's content and the
    end-of-turn token that closes it.

    Templates such as ChatML have no {% generation %} tags, so the spans are found by rendering: the
    conversation up to an assistant turn with a generation prompt is a prefix of the whole text, and the
    turn's content follows it; the first end token after the content closes the turn. Character spans
    become token spans through the fast tokenizer's offset mapping."""
    if fmt.template is None:
        raise WorkbenchError("assistant_mask needs a chat template")
    messages = check_messages(messages)
    text = render(tokenizer, messages, fmt.template)
    spans = _assistant_spans(tokenizer, messages, fmt.template, text)
    encoded = _encode(tokenizer, text, offsets=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    mask = [0] * len(ids)
    for start, content_end, turn_end in spans:
        closed = False
        for i, (a, b) in enumerate(offsets):
            if b <= a:  # special tokens added by the tokenizer (no characters)
                continue
            if a < content_end and b > start:
                mask[i] = 1
            elif a >= content_end and a < turn_end and not closed:
                mask[i] = 1  # between the content and its end token (the end token included)
                closed = ids[i] in fmt.end_ids
        if not closed:  # the template closes turns with text, not an end token: train on content only
            for i, (a, b) in enumerate(offsets):
                if a >= content_end and a < turn_end:
                    mask[i] = 0
    return MaskedRecord(text, ids, mask, [tuple(o) for o in offsets])


def _assistant_spans(tokenizer: Any, messages: list[dict], template: str, text: str) -> list[tuple[int, int, int]]:
    """(content start, content end, turn end) character positions of each assistant turn in `text`."""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], template, add_generation_prompt=True) if index else ""
        through = render(tokenizer, messages[: index + 1], template)
        if not text.startswith(before) or not text.startswith(through):
            raise WorkbenchError("the chat template does not render a conversation as a growing text, so the "
                                 "assistant tokens cannot be found")
        start = text.find(message["content"], len(before))
        if start < 0 or start >= len(through):
            raise WorkbenchError(f"the chat template rewrites assistant turn {index + 1}'s content, so its "
                                 "tokens cannot be found")
        spans.append((start, start + len(message["content"]), len(through)))
    return spans


# ---------------------------------------------------------------- instruction tuning


def instruct_format(tokenizer: Any, folder: str | Path) -> ChatFormat:
    """The format instruction tuning renders records with: the model's template, else the default."""
    return chat_format(tokenizer, folder, use_default=True)


def ship_template(tokenizer: Any, folder: str | Path) -> str:
    """Write the template instruction tuning used into the tuned model's folder (chat_template.jinja),
    so plain transformers, vLLM or Ollama prompt the tuned model exactly as it was trained."""
    template = tokenizer_template(tokenizer) or DEFAULT_TEMPLATE
    (Path(folder) / "chat_template.jinja").write_text(template, encoding="utf-8")
    return template
