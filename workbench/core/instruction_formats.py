"""Instruction data formats, all normalised to one shape: {"messages": [{"role", "content"}, ...]}.

Accepted, one record per JSONL line (or one JSON array of records):
- OpenAI chat:  {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]} (multi-turn;
  content may also be a list of {"type": "text", "text": ...} parts)
- ShareGPT:     {"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...]}
- Alpaca:       {"instruction": ..., "input": ..., "output": ...} (input optional, appended to the instruction)
- plain:        {"instruction": ..., "response": ...}
"""

from __future__ import annotations

import json
from typing import Any

from .errors import WorkbenchError

FORMATS_HINT = ("OpenAI 'messages', ShareGPT 'conversations', Alpaca instruction/input/output, or "
                "instruction/response")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "model": "assistant"}
MESSAGE_ROLES = ("system", "user", "assistant")


def normalise_line_ends(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_records(text: str, source: str) -> list[dict]:
    """Every record of a JSONL file (or a JSON array), each normalised to {"messages": [...]}."""
    text = normalise_line_ends(text).lstrip("\ufeff")
    if text.lstrip().startswith("["):
        items = _load_json_array(text, source)
        return [to_messages(item, f"{source}: item {n}") for n, item in enumerate(items, 1)]
    return [to_messages(_load_json_line(line, source, n), f"{source}: line {n}")
            for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def to_messages(item: Any, where: str = "record") -> dict:
    """One record of any accepted format as {"messages": [...]}; a clear one-line error otherwise."""
    if not isinstance(item, dict):
        raise WorkbenchError(f"{where}: expected a JSON object")
    if "messages" in item:
        messages = _openai_messages(item["messages"], where)
    elif "conversations" in item:
        messages = _sharegpt_messages(item["conversations"], where)
    elif "instruction" in item:
        messages = _instruction_messages(item, where)
    else:
        raise WorkbenchError(f"{where}: unknown record format (fields: {', '.join(sorted(item)) or 'none'}); "
                             f"use {FORMATS_HINT}")
    return {"messages": _checked(messages, where)}


def message_texts(record: dict) -> list[str]:
    return [m["content"] for m in record["messages"]]


def _openai_messages(messages: Any, where: str) -> list[dict]:
    if not isinstance(messages, list):
        raise WorkbenchError(f"{where}: 'messages' must be a list")
    out = []
    for n, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise WorkbenchError(f"{where}: message {n} must be an object with role and content")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise WorkbenchError(f"{where}: message {n} has role {role!r}; use {', '.join(MESSAGE_ROLES)}")
        out.append({"role": role, "content": _content_text(message.get("content"), f"{where}: message {n}")})
    return out


def _content_text(content: Any, where: str) -> str:
    """A string, or OpenAI's list of content parts of which only text parts are accepted."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise WorkbenchError(f"{where}: content must be a string (or a list of text parts)")


def _sharegpt_messages(turns: Any, where: str) -> list[dict]:
    if not isinstance(turns, list):
        raise WorkbenchError(f"{where}: 'conversations' must be a list")
    out = []
    for n, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
            who = turn.get("from") if isinstance(turn, dict) else None
            raise WorkbenchError(f"{where}: turn {n} has 'from' {who!r}; use system, human or gpt")
        if not isinstance(turn.get("value"), str):
            raise WorkbenchError(f"{where}: turn {n} needs a string 'value'")
        out.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
    return out


def _instruction_messages(item: dict, where: str) -> list[dict]:
    alpaca = "response" not in item and ("output" in item or "input" in item)
    response_key = "output" if alpaca else "response"
    for key in ("instruction", response_key):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise WorkbenchError(f"{where}: needs a non-empty string '{key}' (fields: instruction and "
                                 "response, or Alpaca's instruction, input, output)")
    instruction = item["instruction"]
    extra = item.get("input")
    if extra is not None and not isinstance(extra, str):
        raise WorkbenchError(f"{where}: 'input' must be a string")
    if extra and extra.strip():
        instruction = f"{instruction.rstrip()}\n\n{extra.strip()}"
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": item[response_key]}]
    if isinstance(item.get("system"), str) and item["system"].strip():
        messages.insert(0, {"role": "system", "content": item["system"]})
    return messages


def _checked(messages: list[dict], where: str) -> list[dict]:
    """Line ends normalised; at least one non-empty assistant turn; a system message only first."""
    messages = [{"role": m["role"], "content": normalise_line_ends(m["content"])} for m in messages]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise WorkbenchError(f"{where}: needs at least one non-empty assistant turn (the text to learn)")
    if any(m["role"] == "system" for m in messages[1:]):
        raise WorkbenchError(f"{where}: a system message may only come first")
    if not any(m["role"] == "user" for m in messages):
        raise WorkbenchError(f"{where}: needs at least one user turn")
    return messages


def _load_json_array(text: str, source: str) -> list:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkbenchError(f"{source}: line {error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise WorkbenchError(f"{source}: JSON nested too deeply") from None
    if not isinstance(items, list):
        raise WorkbenchError(f"{source}: expected a JSON array of records")
    return items


def _load_json_line(line: str, source: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise WorkbenchError(f"{source}: line {number}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise WorkbenchError(f"{source}: line {number}: JSON nested too deeply") from None
