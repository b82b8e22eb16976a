"""`workbench serve` on the real SmolLM2-135M-Instruct: greedy replies equal plain transformers' `generate`
with the model's chat template and its generation config (end tokens), streamed or not."""

from __future__ import annotations

import openai
import pytest
from serve_helpers import ServerProcess

QUESTIONS = ["What did the Red Queen say to Alice?", "Name three colours."]


@pytest.fixture(scope="module")
def smol_server(smollm2_dir, tmp_path_factory):
    from workbench.core.context import open_workspace
    from workbench.core.models import add_model

    home = tmp_path_factory.mktemp("smol-serve")
    ctx = open_workspace(home, starter=False)
    add_model(ctx.ws, ctx.registry, "smollm2", str(smollm2_dir), copy=False)
    ctx.registry.close()
    process = ServerProcess(home, ["smollm2"])
    yield process
    process.stop()


def transformers_reply(folder, question: str, max_new_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_greedy_replies_equal_transformers(smol_server, smollm2_dir):
    client = openai.OpenAI(base_url=smol_server.url, api_key="x", max_retries=0, timeout=600)
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        expected = transformers_reply(smollm2_dir, question, 24)
        reply = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=24, temperature=0)
        assert reply.choices[0].message.content == expected
        streamed = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=24, temperature=0,
                                                  stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
