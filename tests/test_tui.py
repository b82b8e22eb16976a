"""Pilot tests for the full-screen app: every screen driven by keys, asserting what the user sees and
what lands in the registry. Workers are awaited (app.workers.wait_for_complete), never slept on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label, Select, SelectionList, Static

from workbench.core.context import open_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.widgets.transcript import Bubble

from tui_helpers import SIZE, TEXT, notes, select_row, settle, table_column, visible_text  # noqa: F401


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT)
    return path


# ---------------------------------------------------------------- start-up


def test_opening_the_app_paints_models_without_importing_torch(home):
    code = (
        "import asyncio, sys\n"
        "from workbench.tui.app import WorkbenchApp\n"
        "async def main():\n"
        "    app = WorkbenchApp(sys.argv[1])\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print(app.screen.query_one('#models-table').row_count)\n"
        "        print('torch' in sys.modules, 'transformers' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False", "False"]


async def test_modes_switch_by_key_and_function_key(home):
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        for key, mode in [("2", "data"), ("3", "train"), ("f4", "chat"), ("f5", "dialogue"),
                          ("f6", "evaluate"), ("f1", "models")]:
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
            assert app.screen.query_one(f"#mode-{mode}").has_class("-current")


# ---------------------------------------------------------------- models


async def test_models_new_rename_delete_land_in_the_registry(home):
    app = WorkbenchApp(home)
    registry = app.ctx.registry
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        dialog = app.screen
        await pilot.press(*"mini")
        for name, value in [("layers", "1"), ("hidden", "32"), ("heads", "2"), ("context", "64")]:
            dialog.query_one(f"#f-{name}", Input).value = value
        await pilot.press("enter")
        await settle(pilot)
        assert registry.get_model("mini").params > 0
        table = app.screen.query_one("#models-table", DataTable)
        assert table_column(table) == ["tiny-neo", "mini"]

        table.move_cursor(row=1)
        await pilot.press("r")
        await pilot.pause()
        app.screen.query_one("#f-new", Input).value = "mini2"
        await pilot.press("enter")
        await settle(pilot)
        assert registry.find_model("mini") is None and registry.find_model("mini2") is not None
        assert "mini2" in table_column(table)

        table.move_cursor(row=1)
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("n")  # no: nothing happens
        await settle(pilot)
        assert registry.find_model("mini2") is not None
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert registry.find_model("mini2") is None
        assert table_column(table) == ["tiny-neo"]


async def test_models_detail_shows_lineage_and_evaluations(home):
    ctx = open_workspace(home)
    base = ctx.registry.get_model("tiny-neo")
    from dataclasses import replace

    ctx.registry.add_model(replace(base, name="child", parent="tiny-neo", source="fine-tuned", dataset="alice"))
    ctx.registry.add_evaluation("child", "perplexity", 123.5, target="alice:test")
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#models-table", DataTable)
        select_row(table, "child")
        await pilot.pause()
        detail = visible_text(app.screen.query_one("#model-detail-text", Static))
        assert "child <- tiny-neo" in detail
        assert "perplexity" in detail and "123.5" in detail
        # the table says which data the figure belongs to
        assert "123.5 on alice:test" in [str(c) for c in table.get_row_at(table_column(table).index("child"))]


async def test_model_errors_become_notifications_with_the_core_message(home):
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await pilot.pause()
        await pilot.press(*"other")
        app.screen.query_one("#f-source", Input).value = "/nonexistent/folder"
        await pilot.press("enter")
        await settle(pilot)
        assert any("/nonexistent/folder does not exist" in n for n in notes(app))
        assert app.current_mode == "models" and app.is_running


async def test_chat_with_from_models_opens_chat_on_that_model(home):
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await pilot.pause()
        assert app.current_mode == "chat"
        assert app.screen.query_one("#chat-model", Select).value == "tiny-neo"


# ---------------------------------------------------------------- chat and dialogue


async def test_chat_streams_tokens_and_saves_and_loads_the_session(home, monkeypatch):
    from workbench.tui.screens import chat

    pieces: list[str] = []
    original = chat.ChatScreen.on_chat_token
    monkeypatch.setattr(chat.ChatScreen, "on_chat_token", lambda self, m: (pieces.append(m.piece), original(self, m)))
    app = WorkbenchApp(home, start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#set-max_new_tokens", Input).value = "12"
        screen.query_one("#chat-input", Input).focus()
        await pilot.press(*"Hello there", "enter")
        await settle(pilot)
        bubbles = list(screen.query(Bubble))
        assert [b.speaker for b in bubbles] == ["user", "model"]
        assert bubbles[0].text == "Hello there"
        assert len(pieces) > 1 and bubbles[1].text == "".join(pieces).strip()
        live = [(b.speaker, b.border_title, b.text, sorted(b.classes)) for b in bubbles]

        await pilot.press("ctrl+s")
        await pilot.pause()
        (record,) = app.ctx.registry.list_sessions()
        assert record.kind == "chat" and record.turns == 2 and record.models == ["tiny-neo"]

        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not screen.query(Bubble)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert [b.text for b in screen.query(Bubble)][0] == "Hello there"
        assert len(screen.session.turns) == 2
        # a reloaded session looks the same as the live one
        assert [(b.speaker, b.border_title, b.text, sorted(b.classes)) for b in screen.query(Bubble)] == live


async def test_chat_refuses_bad_settings_with_a_notification(home):
    app = WorkbenchApp(home, start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#set-top_p", Input).value = "2"
        await pilot.pause()
        assert "top_p must be in (0, 1]" in visible_text(screen.query_one("#settings-error", Label))
        screen.query_one("#chat-input", Input).focus()
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        assert "top_p must be in (0, 1] (got 2.0)" in notes(app)
        assert not screen.query(Bubble)


async def test_dialogue_two_voices_then_save_transcript(home):
    app = WorkbenchApp(home, start_mode="dialogue")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#set-max_new_tokens", Input).value = "8"
        screen.query_one("#dialogue-turns", Input).value = "3"
        screen.query_one("#dialogue-opening", Input).focus()
        await pilot.press(*"Once upon a time", "enter")
        await settle(pilot)
        bubbles = list(screen.query(Bubble))
        assert [b.speaker for b in bubbles] == ["opening", "a", "b", "a"]
        assert bubbles[1].has_class("-a") and bubbles[2].has_class("-b")
        assert "finished after 3 turns" in visible_text(screen.query_one("#dialogue-status", Label))
        await pilot.press("ctrl+s")
        await pilot.pause()
        (record,) = app.ctx.registry.list_sessions()
        assert record.kind == "dialogue" and record.turns == 4


async def test_dialogue_stop_keeps_what_was_said(home):
    app = WorkbenchApp(home, start_mode="dialogue")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#dialogue-turns", Input).value = "50"
        screen.query_one("#dialogue-opening", Input).focus()
        await pilot.press(*"Hello", "enter")
        await pilot.press("escape")
        assert not screen.running
        await settle(pilot)
        assert len(screen.query(Bubble)) < 51
        assert "stopped" in visible_text(screen.query_one("#dialogue-status", Label))


# ---------------------------------------------------------------- data


async def test_data_add_from_file_picker_and_delete(home, text_file):
    app = WorkbenchApp(home, start_mode="data")
    registry = app.ctx.registry
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        await pilot.press(*str(text_file.parent / "missing.txt"))
        await pilot.pause()
        assert "no such file" in visible_text(dialog.query_one("#form-error", Label))
        dialog.query_one("#path", Input).value = str(text_file)
        dialog.query_one("#f-name", Input).value = "tiny"
        await pilot.pause()
        dialog.query_one("#path", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        record = registry.get_dataset("tiny")
        assert record.kind == "text" and record.tokens > 0
        table = app.screen.query_one("#data-table", DataTable)
        assert table_column(table) == ["tiny"]
        assert "Alice was beginning" in visible_text(app.screen.query_one("#data-detail-text", Static))

        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert registry.find_dataset("tiny") is None and table.row_count == 0


async def test_get_book_offline_is_a_notification_not_a_crash(home, monkeypatch):
    from workbench.core import data
    from workbench.core.errors import WorkbenchError

    def offline(url, what=None):
        raise WorkbenchError(f"cannot download '{what}': the machine is offline")

    monkeypatch.setattr(data, "download", offline)
    app = WorkbenchApp(home, start_mode="data")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert "cannot download 'alice': the machine is offline" in notes(app)
        assert app.ctx.registry.list_datasets() == []


# ---------------------------------------------------------------- train


async def test_train_form_validates_as_you_type_and_previews_the_command(home, text_file):
    ctx = open_workspace(home)
    from workbench.core.data import add_dataset

    add_dataset(ctx, "tiny", text_file)
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        preview = screen.query_one("#train-preview", Static)
        problem = screen.query_one("#train-problem", Label)
        assert visible_text(preview) == ("$ workbench train --model tiny-neo --data tiny --out tiny-neo-tiny "
                                         "--objective causal --method full --detach")
        screen.query_one("#t-steps", Input).value = "abc"
        await pilot.pause()
        assert "Steps: 'abc' is not a whole number" in visible_text(problem)
        screen.query_one("#t-steps", Input).value = "0"
        await pilot.pause()
        assert "Steps must be an integer of at least 1" in visible_text(problem)
        screen.query_one("#t-steps", Input).value = "20"
        screen.query_one("#t-seq", Input).value = "512"
        await pilot.pause()
        assert "longer than tiny-neo's context" in visible_text(problem)
        screen.query_one("#t-seq", Input).value = "64"
        await pilot.pause()
        assert visible_text(problem) == ""
        assert "--steps 20 " in visible_text(preview) and "--seq 64 " in visible_text(preview)
        # the preview is a command the real CLI accepts, with the same settings
        import shlex

        from workbench.cli import build_parser

        args = build_parser().parse_args(shlex.split(visible_text(preview)[2:])[1:])
        assert (args.base_model, args.dataset, args.out, args.steps, args.seq, args.detach) == (
            "tiny-neo", "tiny", "tiny-neo-tiny", 20, 64, True)
        screen.query_one("#t-out", Input).value = "tiny-neo"
        await pilot.pause()
        assert "Output model must differ from Base model" in visible_text(problem)  # worded for the form
        await pilot.press("ctrl+r")  # refused with the same message, nothing launched
        await settle(pilot)
        assert "Output model must differ from Base model (training never overwrites its base)" in notes(app)
        assert app.ctx.registry.list_jobs() == []


async def test_train_screen_reattaches_to_jobs_in_the_registry(home):
    ctx = open_workspace(home)
    job = ctx.registry.create_job("tiny-neo", "out-model", None, {"steps": 10}, 10, status="completed")
    ctx.registry.update_job(job.id, step=10)
    ctx.registry.add_metrics(job.id, [
        {"step": s, "split": "train", "loss": 5.0 - s * 0.1, "lr": 1e-3, "tokens_per_s": 100.0}
        for s in range(1, 11)] + [{"step": 10, "split": "val", "loss": 4.5}])
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await settle(pilot)
        await settle(pilot)
        assert table_column(screen.query_one("#jobs-table", DataTable), 2) == ["out-model"]
        assert screen.query_one("LossChart").count == 11
        stats = visible_text(screen.query_one("#job-stats", Label))
        assert "10/10" in stats and "val 4.5" in stats and "train 4" in stats
        await pilot.press("l")
        assert screen.query_one("LossChart").log_scale
        await pilot.press("c")  # a completed job cannot be cancelled: said, not crashed
        await pilot.pause()
        assert "select a queued or running job to cancel" in notes(app)


# ---------------------------------------------------------------- evaluate


async def test_evaluate_perplexity_lands_in_the_registry_and_compares_with_earlier(home, text_file):
    ctx = open_workspace(home)
    from workbench.core.data import add_dataset

    add_dataset(ctx, "tiny", text_file)
    ctx.registry.add_evaluation("tiny-neo", "perplexity", 99999.0, target="tiny:test")
    app = WorkbenchApp(home, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.query_one("#eval-models", SelectionList).selected == ["tiny-neo"]
        assert visible_text(screen.query_one("#eval-problem", Label)) == ""
        await pilot.press("ctrl+r")
        await settle(pilot)
        stored = [e for e in app.ctx.registry.evaluations(model="tiny-neo", metric="perplexity")]
        assert len(stored) == 2
        table = screen.query_one("#eval-table", DataTable)
        row = table.get_row_at(0)
        assert str(row[1]) == "perplexity" and str(row[2]) == "tiny:test"
        assert str(row[4]) == "99,999" and "better" in str(row[5])
        history = screen.query_one("#history-table", DataTable)
        assert "perplexity" in table_column(history)


async def test_evaluate_style_shows_both_matrices(home, text_file, tmp_path):
    from dataclasses import replace

    from workbench.core.data import add_dataset

    ctx = open_workspace(home)
    add_dataset(ctx, "tiny", text_file)
    other = tmp_path / "other.txt"
    other.write_text(("The raven sat upon the pallid bust of Pallas just above my chamber door, "
                      "and nothing more was heard that night.\n\n") * 30)
    add_dataset(ctx, "other", other)
    ctx.registry.add_model(replace(ctx.registry.get_model("tiny-neo"), name="twin"))
    app = WorkbenchApp(home, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#eval-models", SelectionList).select_all()
        metrics = screen.query_one("#eval-metrics", SelectionList)
        metrics.deselect_all()
        metrics.select("style")
        screen.query_one("#eval-data", SelectionList).select_all()
        await pilot.pause()
        assert visible_text(screen.query_one("#eval-problem", Label)) == ""
        await pilot.press("ctrl+r")
        await settle(pilot)
        ppl = screen.query_one("#style-ppl", DataTable)
        confusion = screen.query_one("#style-confusion", DataTable)
        assert table_column(ppl) == ["tiny-neo", "twin"] and len(ppl.columns) == 3
        assert table_column(confusion) == ["tiny-neo", "twin"]
        assert len(app.ctx.registry.evaluations(metric="style_self_attribution")) == 2
        assert "samples attributed" in visible_text(screen.query_one("#eval-stage", Label))


async def test_evaluate_explains_what_is_missing(home):
    app = WorkbenchApp(home, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        problem = visible_text(app.screen.query_one("#eval-problem", Label))
        assert "perplexity and style need a dataset: tick one under Datasets" in problem
        assert "--" not in problem  # worded for the app, not with CLI flags
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any("perplexity and style need" in n for n in notes(app))


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
async def test_end_to_end_train_watch_the_chart_then_chat_with_the_result(home, text_file):
    ctx = open_workspace(home)
    from workbench.core.data import add_dataset

    add_dataset(ctx, "tiny", text_file)
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("n")
        await pilot.pause()
        for name, value in [("steps", "4"), ("batch", "2"), ("seq", "32"), ("eval_every", "2"),
                            ("warmup", "1")]:
            screen.query_one(f"#t-{name}", Input).value = value
        await pilot.pause()
        await pilot.press("ctrl+r")
        await settle(pilot)
        (job,) = app.ctx.registry.list_jobs()
        chart = screen.query_one("LossChart")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = next((j for j in screen.jobs if j.id == job.id), None)
            if current and current.status not in ("queued", "running") and chart.count >= 5:
                break
            await pilot.pause(0.2)  # the job is another process: poll what the screen shows
        assert current.status == "completed", (current, app.ctx.ws.job_dir(job.id))
        assert chart.count >= 5  # 4 train points and at least one validation point
        assert app.ctx.registry.find_model("tiny-neo-tiny") is not None

        await pilot.press("d")  # delete the ended job from the app: its model stays
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert app.ctx.registry.list_jobs() == [] and not app.ctx.ws.job_dir(job.id).exists()
        assert any(note.startswith(f"deleted job {job.id}") for note in notes(app)), notes(app)

        await pilot.press("f1")
        await pilot.pause()
        models = app.screen.query_one("#models-table", DataTable)
        assert "tiny-neo-tiny" in table_column(models)
        models.move_cursor(row=table_column(models).index("tiny-neo-tiny"))
        await pilot.press("c")
        await pilot.pause()
        chat_screen = app.screen
        assert chat_screen.query_one("#chat-model", Select).value == "tiny-neo-tiny"
        chat_screen.query_one("#set-max_new_tokens", Input).value = "8"
        chat_screen.query_one("#chat-input", Input).focus()
        await pilot.press(*"Alice was", "enter")
        await settle(pilot)
        reply = list(chat_screen.query(Bubble))[-1]
        assert reply.speaker == "model" and reply.border_title == "tiny-neo-tiny" and reply.text


async def wait_for(pilot, condition, timeout: float = 90.0, what: str = "condition") -> None:
    """Poll a condition about another process (a job) with a deadline, letting the app run meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.2)


@pytest.mark.slow
async def test_jobs_outlive_the_app_and_cancel_resume_from_a_new_one(home, text_file):
    from workbench.core.jobs import cancel_job, pid_alive, wait_job
    from workbench.core.data import add_dataset

    ctx = open_workspace(home)
    add_dataset(ctx, "tiny", text_file)
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        for name, value in [("steps", "100000"), ("batch", "1"), ("seq", "16"), ("eval_every", "0")]:
            app.screen.query_one(f"#t-{name}", Input).value = value
        await pilot.press("ctrl+r")
        await settle(pilot)
        (job,) = app.ctx.registry.list_jobs()
        await wait_for(pilot, lambda: ctx.registry.get_job(job.id).step >= 2, what="job training")
    # the app has closed: the job runs on
    running = ctx.registry.get_job(job.id)
    assert running.status == "running" and pid_alive(running.pid)

    app = WorkbenchApp(home, start_mode="train")
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.watched == job.id and screen.jobs, what="re-attached")
            await pilot.press("c")
            await pilot.pause()
            await pilot.press("y")
            await settle(pilot)
            await wait_for(pilot, lambda: ctx.registry.get_job(job.id).status == "cancelled", what="cancelled")
            await wait_for(pilot, lambda: "[cancelled]" in visible_text(screen.query_one("#job-title", Label)),
                           what="cancelled shown")
            await pilot.press("g")  # register the cancelled job's checkpoint as a model, from the app
            await pilot.pause()
            assert app.screen.query("#f-name"), notes(app)
            suggested = app.screen.query_one("#f-name", Input).value
            assert suggested.startswith(f"{job.out_model}-step")
            await pilot.press("enter")
            await settle(pilot)
            assert ctx.registry.get_model(suggested).job_id == job.id
            await pilot.press("u")
            await settle(pilot)
            assert ctx.registry.get_job(job.id).status in ("queued", "running")
            assert "job 1 resumed" in notes(app)
    finally:
        if ctx.registry.get_job(job.id).status in ("queued", "running"):
            cancel_job(ctx, job.id, force=True)
        wait_job(ctx, job.id, timeout=30)
