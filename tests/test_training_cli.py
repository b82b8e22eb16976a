"""`workbench train` end to end in a temporary workspace (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_training import synthetic_text


def wb(home, *args, check=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_train_end_to_end_registers_lineage(home, tmp_path):
    text = tmp_path / "words.txt"
    text.write_text(synthetic_text())
    wb(home, "data", "add", "words", str(text))
    wb(home, "models", "new", "mini", "--layers", "1", "--hidden", "32", "--heads", "2", "--context", "64")
    result = wb(home, "train", "--model", "mini", "--data", "words", "--out", "mini-words", "--steps", "4",
                "--batch", "2", "--seq", "32", "--eval-every", "2", "--warmup", "1", "--lr", "1e-3",
                "--precision", "fp32", "--json")
    data = json.loads(result.stdout)  # stdout is data only
    assert data["model"] == "mini-words" and data["steps_done"] == 4 and not data["stopped"]
    assert data["final_val_loss"] > 0 and data["settings"]["seq"] == 32
    assert "method: full fine-tune" in result.stderr and "train mini-words" in result.stderr  # progress bar
    shown = json.loads(wb(home, "models", "show", "mini-words", "--json").stdout)
    assert shown["parent"] == "mini" and shown["dataset"] == "words" and shown["lineage"] == ["mini"]
    assert shown["meta"]["final_train_loss"] == data["final_train_loss"]
    assert shown["meta"]["settings"]["lr"] == 1e-3
    log = [json.loads(line) for line in (home / "jobs" / "fg-mini-words" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in log if r["split"] == "val"] == [2, 4]
    # the registered model generates
    wb(home, "generate", "mini-words", "the cat", "--max-new-tokens", "3")

    # LoRA adapter, text output
    lora = wb(home, "train", "--model", "mini", "--data", "words", "--out", "mini-lora", "--method", "lora",
              "--lora-r", "2", "--steps", "2", "--batch", "2", "--seq", "32", "--no-progress")
    assert "registered adapter 'mini-lora' (parent mini)" in lora.stdout
    assert "LoRA on q_proj, v_proj" in lora.stderr  # peft's default targets for gpt_neo


def test_train_refuses_bad_settings_with_one_line(home):
    bad = wb(home, "train", "--model", "tiny-neo", "--out", "x1", "--objective", "kl-letter", "--seq", "4096",
             check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "longer than tiny-neo's context" in bad.stderr
    bad = wb(home, "train", "--model", "tiny-neo", "--out", "x1", "--objective", "kl-letter", "--batch", "0",
             check=False)
    assert bad.returncode == 1 and "--batch must be" in bad.stderr
    usage = wb(home, "train", "--model", "tiny-neo", "--out", "x1", "--method", "nope", check=False)
    assert usage.returncode == 2
    assert not (home / "jobs" / "fg-x1").exists()
