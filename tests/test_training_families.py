"""Training on every family: tiny random models of each (tests/tiny_families.py) with the SmolLM2 tokenizer."""

from __future__ import annotations

import pytest

from tiny_families import FAMILIES, VOCAB, family_tokenizer_dir, tiny_family  # noqa: F401  (fixtures)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_tiny_family_loads_with_the_chat_tokenizer(tiny_family, family):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_family(family)
    assert json.loads((folder / "config.json").read_text())["model_type"] == family
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert len(tokenizer) == VOCAB and tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
    assert model.config.num_hidden_layers == 2 and model.get_output_embeddings().weight.shape[0] == VOCAB
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], VOCAB) and torch.isfinite(logits).all()
