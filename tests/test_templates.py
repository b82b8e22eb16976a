"""core/templates.py with the real SmolLM2 tokenizer and its ChatML template: the assistant-token mask
token by token, BOS exactly once, end tokens, where a template comes from, the shipped default."""

from __future__ import annotations

import json
import shutil

import pytest

from tiny_families import family_tokenizer_dir  # noqa: F401  (fixture)
from workbench.core import templates
from workbench.core.errors import WorkbenchError

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue, like the sea."},
    {"role": "user", "content": "Another one?"},
    {"role": "assistant", "content": "Red.\nAs a rose."},
]


@pytest.fixture(scope="module")
def chat_tokenizer(family_tokenizer_dir):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(family_tokenizer_dir))


@pytest.fixture(scope="module")
def fmt(chat_tokenizer, family_tokenizer_dir):  # noqa: F811
    return templates.chat_format(chat_tokenizer, family_tokenizer_dir)


def test_the_smollm2_tokenizer_is_a_chatml_chat_model(chat_tokenizer, fmt):
    assert fmt.is_chat and fmt.source in ("chat_template.jinja", "tokenizer_config.json")
    assert "<|im_start|>" in fmt.template
    assert chat_tokenizer.convert_ids_to_tokens(list(fmt.end_ids)) == ["<|im_end|>"]


def test_mask_covers_each_assistant_turn_and_its_end_token_token_by_token(chat_tokenizer, fmt):
    tok = chat_tokenizer

    def piece(text: str, trained: int) -> list[tuple[int, int]]:
        return [(i, trained) for i in tok(text, add_special_tokens=False)["input_ids"]]

    # ChatML written out by hand: what must be trained is the reply text and the <|im_end|> closing it,
    # never the role headers, the user's or system's words, or the newline after <|im_end|>.
    expected = (piece("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                      "<|im_start|>assistant\n", 0)
                + piece("Blue, like the sea.", 1) + piece("<|im_end|>", 1)
                + piece("\n<|im_start|>user\nAnother one?<|im_end|>\n<|im_start|>assistant\n", 0)
                + piece("Red.\nAs a rose.", 1) + piece("<|im_end|>", 1) + piece("\n", 0))
    masked = templates.assistant_mask(tok, CONVERSATION, fmt)
    assert list(zip(masked.ids, masked.mask)) == expected
    trained_runs = [text for text, trained in masked.segments() if trained]
    assert trained_runs == ["Blue, like the sea.<|im_end|>", "Red.\nAs a rose.<|im_end|>"]
    assert masked.text == tok.apply_chat_template(CONVERSATION, tokenize=False)


def test_a_template_that_writes_bos_is_never_given_a_second_one(family_tokenizer_dir, fmt):  # noqa: F811
    from transformers import AutoTokenizer

    adds_bos = AutoTokenizer.from_pretrained(str(family_tokenizer_dir), add_bos_token=True)
    bos = adds_bos.bos_token_id
    text = templates.render(adds_bos, CONVERSATION[1:2], fmt.template, add_generation_prompt=True)
    assert text.startswith(adds_bos.bos_token)  # SmolLM2's BOS is <|im_start|>, written by the template
    assert adds_bos(text)["input_ids"][:2] == [bos, bos]  # what naive encoding would feed the model
    ids = templates.encode(adds_bos, text)
    assert ids[0] == bos and ids[1] != bos
    plain = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    text = templates.render(adds_bos, CONVERSATION[1:2], plain)
    assert templates.encode(adds_bos, text)[0] == bos  # no BOS in the text: the tokenizer's, once
    assert templates.encode(adds_bos, text)[1] != bos


def test_end_tokens_come_from_generation_config_lists_and_the_tokenizer(chat_tokenizer):
    eos = chat_tokenizer.eos_token_id
    assert templates.end_token_ids(chat_tokenizer, None) == (eos,)
    assert templates.end_token_ids(chat_tokenizer, 7) == (7, eos)
    assert templates.end_token_ids(chat_tokenizer, [9, eos, 7]) == (9, eos, 7)


def test_where_a_template_comes_from(tmp_path, family_tokenizer_dir):  # noqa: F811
    assert templates.template_source(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert templates.template_source(tmp_path) == "tokenizer_config.json"
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert templates.template_source(tmp_path) == "chat_template.jinja"
    assert templates.describe_mode("chat_template.jinja") == "chat (template from chat_template.jinja)"
    assert templates.describe_mode(None) == "plain continuation (no chat template)"


def test_a_base_tokenizer_gets_the_default_template_shipped_with_the_tuned_model(ctx, tmp_path):
    from workbench.core.models import load_tokenizer

    base = ctx.registry.get_model("tiny-neo").path
    tok = load_tokenizer(base)
    assert not templates.chat_format(tok, base).is_chat  # plain continuation until tuned
    fmt = templates.instruct_format(tok, base)
    assert fmt.source == templates.DEFAULT_SOURCE and fmt.end_ids == (tok.eos_token_id,)
    masked = templates.assistant_mask(tok, CONVERSATION, fmt)
    assert [t for t, trained in masked.segments() if trained] == ["Blue, like the sea.<|endoftext|>",
                                                                  "Red.\nAs a rose.<|endoftext|>"]
    out = tmp_path / "tuned"
    shutil.copytree(base, out)
    templates.ship_template(tok, out)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).chat_template == templates.DEFAULT_TEMPLATE


def test_a_template_that_refuses_a_conversation_says_so_in_one_line(chat_tokenizer):
    strict = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with user') }}{% endif %}"
    with pytest.raises(WorkbenchError, match="refused the conversation: Conversations must start with user"):
        templates.render(chat_tokenizer, CONVERSATION, strict)


def test_the_ollama_modelfile_carries_smollm2s_default_system_line(chat_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    from workbench.core.export.modelfile import default_system, write_modelfile

    tokenizer = AutoTokenizer.from_pretrained(str(chat_tokenizer_dir))
    system = default_system(tokenizer)
    # what transformers puts in front of a chat without a system message
    plain = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert system and system.startswith("You are a helpful AI assistant") and system in plain
    text = write_modelfile(tmp_path, "m.gguf", tokenizer).read_text()
    assert f'SYSTEM """{system}"""' in text and "TEMPLATE" in text
