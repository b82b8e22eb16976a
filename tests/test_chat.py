"""Chat and dialogue through the chat template: history trimming, end tokens, recorded prompts, the
non-TTY chat CLI, each dialogue side's perspective. A tiny random Llama with the SmolLM2 tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_families import family_tokenizer_dir, tiny_family  # noqa: F401  (fixtures)
from workbench.core.chat import (DialogueTurn, build_prompt, chat_messages, dialogue_messages, run_dialogue)
from workbench.core.generation import GenerationSettings, generate

ROOT = Path(__file__).resolve().parents[1]


def load_tiny(folder: Path, name: str = "tiny-llama"):
    from workbench.core.models import LoadedModel, load_model_folder
    from workbench.core.templates import chat_format

    model, tokenizer, device = load_model_folder(folder, device="cpu")
    fmt = chat_format(tokenizer, folder, model.generation_config.eos_token_id)
    return LoadedModel(name, model, tokenizer, device, 512, fmt)


@pytest.fixture(scope="module")
def tiny_llama(tiny_family):  # noqa: F811
    return load_tiny(tiny_family("llama"))


def test_long_histories_drop_the_oldest_turns_and_keep_the_system_prompt(tiny_llama):
    turns = []
    for i in range(12):
        turns += [{"speaker": "user", "text": f"question number {i} about the sea and the sky"},
                  {"speaker": "model", "text": f"answer number {i}, with a few more words in it"}]
    messages = chat_messages(turns, "the newest question", system="You are a lighthouse keeper.")
    settings = GenerationSettings(max_new_tokens=400)  # leaves 112 prompt tokens of the 512 context
    warnings = []
    prompt = build_prompt(tiny_llama, messages, settings, warn=warnings.append)
    assert prompt.templated and 0 < len(prompt.ids) <= 112
    assert prompt.dropped_turns > 0 and "oldest turn" in warnings[0]
    assert prompt.text.startswith("<|im_start|>system\nYou are a lighthouse keeper.<|im_end|>\n<|im_start|>user\n")
    assert "question number 0 " not in prompt.text and "answer number 11," in prompt.text
    assert prompt.text.endswith("the newest question<|im_end|>\n<|im_start|>assistant\n")
    kept = [m for m in messages if m["content"] in prompt.text]
    assert kept[0]["role"] == "system" and kept[1]["role"] == "user"  # never opens on an assistant turn
    everything = build_prompt(tiny_llama, messages, GenerationSettings(max_new_tokens=8))
    assert everything.dropped_turns == 0 and "question number 0 " in everything.text


def test_the_recorded_prompt_is_what_the_template_renders(tiny_llama):
    messages = chat_messages([{"speaker": "user", "text": "Hi"}, {"speaker": "model", "text": "Hello."}],
                             "How are you?", system="Be kind.")
    prompt = build_prompt(tiny_llama, messages, GenerationSettings(max_new_tokens=8))
    assert prompt.text == tiny_llama.tokenizer.apply_chat_template(messages, tokenize=False,
                                                                   add_generation_prompt=True)
    assert prompt.ids == tiny_llama.tokenizer(prompt.text, add_special_tokens=False)["input_ids"]


def test_generation_stops_on_any_end_token_of_generation_config(tiny_family, tmp_path):  # noqa: F811
    import shutil

    folder = tmp_path / "two-ends"
    shutil.copytree(tiny_family("llama"), folder)
    # seeded sampling: a random tiny model's greedy text repeats one token; the same seed draws the same
    # tokens again, so the second run can only differ by stopping
    settings = GenerationSettings(max_new_tokens=24, do_sample=True, temperature=2.0, top_k=0, seed=3)
    free = generate(load_tiny(folder), ["Hello there"], settings)[0].token_ids
    # the first token the model writes that it has not written before: make it a second end token
    index = next(i for i, t in enumerate(free) if t not in free[:i] and i >= 2 and t != 2)
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = [2, free[index]]
    (folder / "generation_config.json").write_text(json.dumps(config))
    loaded = load_tiny(folder)
    assert loaded.chat_format.end_ids == (2, free[index])
    stopped = generate(loaded, ["Hello there"], settings)[0]
    assert stopped.token_ids == free[: index + 1]


def test_each_dialogue_side_sees_its_own_lines_as_the_assistant():
    transcript = [DialogueTurn("opening", None, "Who goes there?"), DialogueTurn("A", "m", "A friend."),
                  DialogueTurn("B", "m", "Prove it."), DialogueTurn("A", "m", "I brought bread.")]
    a = dialogue_messages(transcript, "A", ("Alice", "Edgar"))
    b = dialogue_messages(transcript, "B", ("Alice", "Edgar"))
    assert a[0]["role"] == "system" and "You are Alice" in a[0]["content"] and "Edgar" in a[0]["content"]
    assert [(m["role"], m["content"]) for m in a[1:]] == [
        ("user", "Who goes there?"), ("assistant", "A friend."), ("user", "Prove it."), ("assistant", "I brought bread.")]
    assert "You are Edgar" in b[0]["content"] and "Who goes there?" in b[0]["content"]  # B's own opening
    assert [(m["role"], m["content"]) for m in b[1:]] == [
        ("user", "A friend."), ("assistant", "Prove it."), ("user", "I brought bread.")]


def test_a_dialogue_of_chat_models_records_personas_and_prompts(tiny_llama):
    turns = list(run_dialogue((tiny_llama, tiny_llama), "Who goes there?", 2, GenerationSettings(max_new_tokens=4),
                              personas=("Ann", "Bob")))
    assert [(t.speaker, t.persona) for t in turns] == [("A", "Ann"), ("B", "Bob")]
    assert "You are Ann" in turns[0].prompt and turns[0].prompt.endswith(
        "<|im_start|>user\nWho goes there?<|im_end|>\n<|im_start|>assistant\n")
    assert "You are Bob" in turns[1].prompt and f"<|im_start|>user\n{turns[0].text}<|im_end|>" in turns[1].prompt


def test_chat_without_a_terminal_reads_lines_and_prints_json_replies(home, tiny_family):  # noqa: F811
    from workbench.core.context import open_workspace
    from workbench.core.models import add_model

    ctx = open_workspace(home)
    add_model(ctx.ws, ctx.registry, "tiny-llama", str(tiny_family("llama")), copy=False)
    ctx.registry.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), "chat", "tiny-llama",
                           "--json", "--max-new-tokens", "3", "--system", "Be brief."],
                          input="Hello there\n\nWhat is up?\n", capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == 2 and replies[0]["session"] == replies[1]["session"]
    assert all(set(r) >= {"text", "session"} for r in replies)
    saved = json.loads((home / "sessions" / f"{replies[0]['session']}.json").read_text())
    assert saved["system"] == "Be brief."
    model_turns = [t for t in saved["turns"] if t["speaker"] == "model"]
    assert [t["text"] for t in model_turns] == [r["text"] for r in replies]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_family("llama")))
    expected = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
         {"role": "assistant", "content": replies[0]["text"]}, {"role": "user", "content": "What is up?"}],
        tokenize=False, add_generation_prompt=True)
    assert model_turns[1]["prompt"] == expected


def test_bleu_rouge_prompts_go_through_the_template_of_chat_models(ctx, tiny_family, tmp_path):  # noqa: F811
    from workbench.core.errors import WorkbenchError
    from workbench.core.evaluation.service import EvalRequest, evaluate
    from workbench.core.models import ModelCache, add_model

    add_model(ctx.ws, ctx.registry, "tiny-llama", str(tiny_family("llama")), copy=False)
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"prompt": p, "reference": "the sea"}) + "\n" for p in ("Name a sea.", "Hi")))

    def run(mode: str, model: str = "tiny-llama") -> dict:
        request = EvalRequest(metrics=["bleu"], refs=str(refs), generation={"max_new_tokens": 4},
                              chat_template=mode, fresh=True)
        return evaluate(ctx, [model], request)["results"][0]

    auto, off = run("auto"), run("off")
    assert auto["settings"]["refs"]["chat_template"] == "on"
    assert auto["settings"]["refs"]["template_source"] in ("chat_template.jinja", "tokenizer_config.json")
    assert off["settings"]["refs"]["chat_template"] == "off" and "model_prompt" not in off["samples"]["refs"][0]
    loaded = ModelCache().get(ctx.registry, "tiny-llama")
    rendered = [loaded.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                     add_generation_prompt=True) for p in ("Name a sea.", "Hi")]
    assert [s["model_prompt"] for s in auto["samples"]["refs"]] == rendered
    direct = generate(loaded, rendered, GenerationSettings(max_new_tokens=4), templated=True)
    assert [s["hypothesis"] for s in auto["samples"]["refs"]] == [d.text.strip() for d in direct]
    stored = [e.settings for e in ctx.registry.evaluations(model="tiny-llama") if e.metric == "bleu"]
    assert {s["chat_template"] for s in stored} == {"on", "off"}  # recorded with each evaluation
    assert run("auto", "tiny-neo")["settings"]["refs"]["chat_template"] == "off"
    with pytest.raises(WorkbenchError, match="has no chat template"):
        run("on", "tiny-neo")


def test_smollm2_follows_a_conversation_through_its_template(smollm2_home):
    from workbench.core.chat import chat_reply
    from workbench.core.context import open_workspace
    from workbench.core.models import ModelCache

    ctx = open_workspace(smollm2_home)
    loaded = ModelCache().get(ctx.registry, "smollm2", device="cpu")
    assert loaded.chat_format.is_chat and loaded.chat_format.source == "chat_template.jinja"
    history = [{"speaker": "user", "text": "What is the capital of France?"},
               {"speaker": "model", "text": "The capital of France is Paris."}]
    messages = chat_messages(history, "And of Italy?", system="Answer in one short sentence.")
    prompt = build_prompt(loaded, messages, GenerationSettings(max_new_tokens=24))
    reply = "".join(chat_reply(loaded, prompt, GenerationSettings(max_new_tokens=24)))
    assert "Rome" in reply  # it read the history: "of Italy" only means the capital through it
    ctx.registry.close()


def test_data_show_preview_and_models_show_say_how_a_model_is_prompted(home, tiny_family, tmp_path, capsys):  # noqa: F811
    from workbench.cli import main

    rows = [{"conversations": [{"from": "human", "value": f"Say {i}."}, {"from": "gpt", "value": f"{i}!"}]}
            for i in range(5)]
    (tmp_path / "say.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--home", str(home), "models", "add", "tiny-llama", str(tiny_family("llama")), "--reference"]) == 0
    assert main(["--home", str(home), "data", "add", "say", str(tmp_path / "say.jsonl")]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "data", "show", "say", "--preview", "2", "--model", "tiny-llama"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- record") == 2 and "<|im_start|>user\nSay " in out
    assert out.split("\u27e6")[2].split("\u27e7")[0].endswith("!<|im_end|>")  # [1] is the legend
    assert main(["--home", str(home), "data", "show", "say", "--preview", "1", "--model", "tiny-neo", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["template_source"] == "workbench default (ChatML)"
    trained = [s["text"] for s in preview["records"][0]["segments"] if s["trained"]]
    assert len(trained) == 1 and trained[0].endswith("!<|endoftext|>")
    assert main(["--home", str(home), "models", "show", "tiny-llama", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["chat_mode"] == "chat (template from chat_template.jinja)"
    assert main(["--home", str(home), "models", "show", "tiny-neo"]) == 0
    assert "chat_mode: plain continuation (no chat template)" in capsys.readouterr().out
    assert main(["--home", str(home), "data", "show", "say", "--preview", "1"]) == 1
    assert "--preview needs --model" in capsys.readouterr().err
