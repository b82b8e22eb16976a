"""An Ollama Modelfile beside a GGUF file, carrying the model's own chat template as a Go template.

The Jinja template is rendered with marker messages (system, user, assistant); when every message comes out
as HEAD(role) CONTENT END and the generation prompt as a fixed suffix — true of ChatML (SmolLM2, Qwen) and
similar layouts — that shape is written as Ollama's TEMPLATE. Otherwise the Modelfile leaves TEMPLATE out
and Ollama falls back to the tokenizer.chat_template stored in the GGUF file.
"""

from __future__ import annotations

from pathlib import Path

MARK = "\x00{}\x00"
ROLES = ("system", "user", "assistant")


def _shape(tokenizer) -> tuple[str, str, str] | None:
    """(head with {{ .Role }}, end of a message, generation prompt) of a HEAD(role) CONTENT END template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": role, "content": MARK.format(i)} for i, role in enumerate(ROLES)]
    try:
        closed = tokenizer.apply_chat_template(messages, tokenize=False)
        opened = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that rejects these messages gets no derived TEMPLATE
        return None
    if not opened.startswith(closed):
        return None
    generation = opened[len(closed):]
    pieces, rest = [], closed
    for i in range(len(ROLES)):
        before, _, rest = rest.partition(MARK.format(i))
        pieces.append(before)
    end = rest
    heads = [pieces[0]] + [p[len(end):] if p.startswith(end) else None for p in pieces[1:]]
    if any(h is None or role not in h for h, role in zip(heads, ROLES)):
        return None
    shapes = {h.replace(role, "{{ .Role }}") for h, role in zip(heads, ROLES)}
    if len(shapes) != 1:
        return None
    return shapes.pop(), end, generation


def go_template(tokenizer) -> str | None:
    """The chat template as an Ollama (Go) template, or None when its shape is not HEAD(role) CONTENT END."""
    shape = _shape(tokenizer)
    if shape is None:
        return None
    head, end, generation = shape
    return "{{- range .Messages }}" + head + "{{ .Content }}" + end + "{{ end }}" + generation


def default_system(tokenizer) -> str | None:
    """The system message the template adds when a chat has none (SmolLM2's "You are a helpful AI
    assistant named SmolLM..."), or None. Ollama adds a Modelfile's SYSTEM in that case, so writing it
    keeps Ollama's prompts equal to transformers'."""
    shape = _shape(tokenizer)
    if shape is None:
        return None
    head, end, _ = shape
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": MARK.format(0)}], tokenize=False)
    except Exception:  # noqa: BLE001 - as above
        return None
    system_head = head.replace("{{ .Role }}", "system")
    if not text.startswith(system_head):
        return None
    content, found, _ = text[len(system_head):].partition(end)
    return content if found and MARK.format(0) not in content else None


def write_modelfile(folder: Path, gguf_name: str, tokenizer) -> Path:
    lines = [f"FROM ./{gguf_name}"]
    template = go_template(tokenizer)
    if template is not None:
        lines.append(f'TEMPLATE """{template}"""')
        system = default_system(tokenizer)
        if system:
            lines.append(f'SYSTEM """{system}"""')
    else:
        lines.append("# TEMPLATE: Ollama uses the chat template stored in the GGUF file")
    if tokenizer.eos_token:
        lines.append(f'PARAMETER stop "{tokenizer.eos_token}"')
    path = folder / "Modelfile"
    path.write_text("\n".join(lines) + "\n")
    return path
