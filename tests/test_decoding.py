"""The batch-1 decoder (core.decoding): token-for-token equal to transformers' generate on every family,
prefix reuse across turns that changes no reply, min_new_tokens, end tokens, the stop event, int8."""

from __future__ import annotations

import threading

import pytest

from tiny_families import FAMILIES, tiny_config
from workbench.core.decoding import Decoder, decoder_for, end_token_ids
from workbench.core.errors import WorkbenchError
from workbench.core.generation import GenerationSettings

PROMPT = [1, 504, 3458, 282, 260, 1345, 30, 2, 1, 9519, 198]


def tiny_model(family: str, seed: int = 0, dtype=None):
    """A random tiny model of `family` in memory (non-zero biases and norms, as tiny_families builds)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1 and param.abs().sum() == 0:
                param.normal_(0.0, 0.02)
            elif param.dim() == 2:  # larger weights than the default init: decisive logits, fewer near-ties
                param.normal_(0.0, 0.2)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def hf_greedy(model, prompt: list[int], new: int, **kwargs) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=2,
                             pad_token_id=2, **kwargs)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_generate_token_for_token(family):
    model = tiny_model(family)
    settings = GenerationSettings(max_new_tokens=24, min_new_tokens=24)
    ours = Decoder(model).generate(PROMPT, settings, {2})
    assert ours == hf_greedy(model, PROMPT, 24)


def test_llama_layout_runs_as_tensor_code_and_others_through_their_forward():
    assert Decoder(tiny_model("llama")).kind == "LlamaStep"
    assert Decoder(tiny_model("qwen2")).kind == "LlamaStep"
    assert Decoder(tiny_model("gpt2")).kind == "ModelStep"
    assert Decoder(tiny_model("mistral")).kind == "ModelStep"  # sliding window


def test_bf16_greedy_equals_generate():
    import torch

    model = tiny_model("llama", dtype=torch.bfloat16)
    settings = GenerationSettings(max_new_tokens=16, min_new_tokens=16)
    assert Decoder(model).generate(PROMPT, settings, {2}) == hf_greedy(model, PROMPT, 16)


def test_sampling_matches_generate_with_the_same_seed():
    import torch

    model = tiny_model("llama")
    settings = GenerationSettings(max_new_tokens=12, min_new_tokens=12, do_sample=True, temperature=0.8,
                                  top_k=20, top_p=0.9, repetition_penalty=1.3)
    torch.manual_seed(7)
    ours = Decoder(model).generate(PROMPT, settings, {2})
    torch.manual_seed(7)
    with torch.inference_mode():
        theirs = model.generate(torch.tensor([PROMPT]), max_new_tokens=12, min_new_tokens=12, do_sample=True,
                                temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.3, eos_token_id=2,
                                pad_token_id=2)[0, len(PROMPT):].tolist()
    assert ours == theirs


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_multi_turn_prefix_reuse_gives_the_same_replies(family):
    model = tiny_model(family)
    settings = GenerationSettings(max_new_tokens=10, min_new_tokens=10)
    reusing, fresh = Decoder(model), Decoder(model)
    history = list(PROMPT)
    for turn in range(3):
        reply = reusing.generate(history, settings, {2})
        assert reply == fresh.generate(history, settings, {2}, reuse=False)
        if turn:
            assert reusing.reused > 0  # the history so far came from the cache
        history = history + reply + [2, 1, 9519, 198 + turn, 504 + turn, 2, 1, 520]
    # an edited earlier turn: only the common start is reused, the reply is still a full encode's
    edited = history[:5] + [777] + history[6:]
    assert reusing.generate(edited, settings, {2}) == fresh.generate(edited, settings, {2}, reuse=False)
    assert reusing.reused == 5


def test_min_new_tokens_holds_back_the_end_token():
    model = tiny_model("llama")
    first = Decoder(model).generate(PROMPT, GenerationSettings(max_new_tokens=1), {2})[0]
    decoder = Decoder(model)
    assert decoder.generate(PROMPT, GenerationSettings(max_new_tokens=8), {first}) == [first]
    out = decoder.generate(PROMPT, GenerationSettings(max_new_tokens=8, min_new_tokens=5), {first})
    assert len(out) >= 5 and first not in out[:5]
    with pytest.raises(WorkbenchError, match="min_new_tokens"):
        GenerationSettings(max_new_tokens=4, min_new_tokens=5).validate()


def test_every_end_token_of_the_generation_config_ends_a_reply():
    model = tiny_model("llama")
    model.generation_config.eos_token_id = [2, 7]

    class Tok:
        eos_token_id = 9

    assert end_token_ids(model, Tok()) == {2, 7, 9}


def test_stop_event_ends_after_the_current_token():
    model = tiny_model("llama")
    stop = threading.Event()
    seen = []

    def on_token(token):
        seen.append(token)
        if len(seen) == 3:
            stop.set()

    out = Decoder(model).generate(PROMPT, GenerationSettings(max_new_tokens=20, min_new_tokens=20), {2},
                                  stop=stop, on_token=on_token)
    assert out == seen and len(out) == 3


def test_int8_weights_keep_the_logits_close():
    import torch

    model = tiny_model("llama", dtype=torch.bfloat16)
    exact, int8 = Decoder(model), Decoder(model, int8=True)
    assert int8.int8 and int8.step.weight_bytes() < 0.6 * exact.step.weight_bytes()
    with torch.inference_mode():
        for ids in (PROMPT, [5], [7], [9]):  # the prompt (exact weights, int8 head), then single tokens
            a, b = exact.step.forward(ids), int8.step.forward(ids)
            assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99


def test_decoder_is_kept_on_the_loaded_model_and_rebuilt_for_int8():
    from workbench.core.models import LoadedModel

    loaded = LoadedModel("m", tiny_model("llama"), None, "cpu", 512)
    first = decoder_for(loaded)
    assert decoder_for(loaded) is first
    assert decoder_for(loaded, int8=True) is not first


def test_cli_min_new_tokens_on_generate_and_bad_values_refused(home):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "WORKBENCH_HOME": str(home)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    # the starter's EOS is <|endoftext|>: min_new_tokens makes every reply at least that long
    result = run("generate", "tiny-neo", "Alice was", "--max-new-tokens", "6", "--min-new-tokens", "6", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["settings"]["min_new_tokens"] == 6 and out["outputs"][0]["new_tokens"] == 6
    bad = run("generate", "tiny-neo", "x", "--max-new-tokens", "3", "--min-new-tokens", "4")
    assert bad.returncode == 1 and "min_new_tokens" in bad.stderr and "Traceback" not in bad.stderr


def test_smollm2_bf16_greedy_equals_generate(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What did the Red Queen say to Alice?"}],
                                         add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = Decoder(model)
    assert decoder.kind == "LlamaStep"
    ours = decoder.generate(prompt, GenerationSettings(max_new_tokens=12), end_token_ids(model, tokenizer))
    assert len(ours) == 12 and ours == hf_greedy(model, prompt, 12)
