"""Instruction tuning end to end: a tiny Llama with the SmolLM2 tokenizer learns a distinctive answer
from a messages JSONL, then plain transformers, prompting it with the template it ships, gets that answer."""

from __future__ import annotations

import json

from tiny_families import family_tokenizer_dir, tiny_family  # noqa: F401  (fixtures)

ANSWER = "Purple, always purple."


def test_a_tuned_chat_model_answers_as_taught_in_plain_transformers(ctx, tiny_family, tmp_path):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.core import data
    from workbench.core.instruct_preview import preview_records
    from workbench.core.models import add_model
    from workbench.core.training import TrainConfig
    from workbench.core.training.loop import train

    base = tiny_family("llama")
    add_model(ctx.ws, ctx.registry, "tiny-llama", str(base), copy=False)
    rows = [{"messages": [{"role": "system", "content": "You answer questions about colours."},
                          {"role": "user", "content": "What colour is the sea?"},
                          {"role": "assistant", "content": ANSWER}]} for _ in range(12)]
    path = tmp_path / "colours.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data.add_dataset(ctx, "colours", path, kind="instructions")

    preview = preview_records(ctx, "colours", "tiny-llama", 1)
    assert [s["text"] for s in preview["records"][0]["segments"] if s["trained"]] == [ANSWER + "<|im_end|>"]

    config = TrainConfig(base_model="tiny-llama", dataset="colours", out="tiny-llama-colours", objective="instruct",
                         steps=45, batch=4, seq=64, lr=1e-2, warmup=2, schedule="constant", eval_every=0,
                         precision="fp32")
    result = train(ctx, config, tmp_path / "run", progress=False)
    folder = result.model.path

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(str(base)).chat_template  # as trained
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    messages = [{"role": "system", "content": "You answer questions about colours."},
                {"role": "user", "content": "What colour is the sea?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
    assert tokenizer.decode(out, skip_special_tokens=True) == ANSWER
    assert out[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # it learned to end its turn
