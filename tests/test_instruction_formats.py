"""Instruction data formats: OpenAI messages, ShareGPT, Alpaca and instruction/response, all to messages."""

from __future__ import annotations

import json

import pytest

from workbench.core import data
from workbench.core.errors import WorkbenchError
from workbench.core.instruction_formats import parse_records, to_messages

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Red."},
]


def test_openai_messages_keep_every_turn():
    assert to_messages({"messages": CONVERSATION}) == {"messages": CONVERSATION}


def test_openai_text_parts_are_joined():
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                           {"role": "assistant", "content": "Hello."}]}
    assert to_messages(record)["messages"][0] == {"role": "user", "content": "Hi there"}


def test_sharegpt_conversations_map_their_roles():
    record = {"conversations": [{"from": "system", "value": "You are terse."}, {"from": "human", "value": "Name a colour."},
                                {"from": "gpt", "value": "Blue."}, {"from": "human", "value": "Another?"},
                                {"from": "gpt", "value": "Red."}]}
    assert to_messages(record) == {"messages": CONVERSATION}


def test_alpaca_input_joins_the_instruction():
    record = {"instruction": "Add one.", "input": "41", "output": "42"}
    assert to_messages(record)["messages"] == [{"role": "user", "content": "Add one.\n\n41"},
                                               {"role": "assistant", "content": "42"}]


def test_instruction_response_pairs_become_one_exchange():
    assert to_messages({"instruction": "Say hi.", "response": "hi\r\nthere"})["messages"] == [
        {"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi\nthere"}]


def test_a_file_may_mix_formats_and_be_a_json_array():
    rows = [{"messages": CONVERSATION[1:3]}, {"conversations": [{"from": "human", "value": "Name a colour."},
                                                                 {"from": "gpt", "value": "Blue."}]},
            {"instruction": "Name a colour.", "output": "Blue."}, {"instruction": "Name a colour.", "response": "Blue."}]
    expected = [{"messages": CONVERSATION[1:3]}] * 4
    assert parse_records("\n".join(json.dumps(r) for r in rows), "f.jsonl") == expected
    assert parse_records(json.dumps(rows), "f.json") == expected


@pytest.mark.parametrize("record, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "at least one non-empty assistant turn"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool'"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}, "content must be a string"),
    ({"messages": "hi"}, "'messages' must be a list"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, "'from' 'bot'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                        {"from": "system", "value": "late"}]}, "system message may only come first"),
    ({"prompt": "x", "completion": "y"}, "unknown record format"),
])
def test_bad_records_say_what_is_wrong(record, message):
    with pytest.raises(WorkbenchError, match=message):
        to_messages(record, "line 7")


def test_a_messages_dataset_is_stored_and_read_as_messages(ctx, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": CONVERSATION}) + "\n" for _ in range(5)), encoding="utf-8")
    record = data.add_dataset(ctx, "chat", path, kind="instructions")
    assert sum(record.splits.values()) == 5
    assert data.read_instructions(ctx, record, "train")[0] == {"messages": CONVERSATION}
