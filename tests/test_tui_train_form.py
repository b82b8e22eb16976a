"""The New-job form: the output name is the user's once edited, the command follows every field, the
form starts from defaults for the next job, errors are worded for the form, the base-model list follows
the registry."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label, Select, Static

from workbench.core.context import open_workspace
from workbench.tui.app import WorkbenchApp

from tui_helpers import SIZE, TEXT, settle, visible_text


@pytest.fixture
def with_data(home, tmp_path):
    from workbench.core.data import add_dataset

    source = tmp_path / "tiny.txt"
    source.write_text(TEXT)
    ctx = open_workspace(home)
    add_dataset(ctx, "tiny", source)
    ctx.registry.close()
    return home


async def test_a_cleared_output_name_stays_the_users(with_data):
    app = WorkbenchApp(with_data, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        out = app.screen.query_one("#t-out", Input)
        assert out.value == "tiny-neo-tiny"  # a real value, suggested from the base model and the data
        app.screen.query_one("#t-objective", Select).value = "kl-letter"  # no data: named after the letter
        await pilot.pause()
        assert out.value == "tiny-neo-likes-x"
        app.screen.query_one("#t-objective", Select).value = "causal"
        await pilot.pause()
        out.focus()
        await pilot.press("ctrl+u")  # clear it: it stays empty, no suggestion comes back
        await pilot.pause()
        assert out.value == ""
        assert "name the Output model" in visible_text(app.screen.query_one("#train-problem", Label))
        await pilot.press(*"alice-neo")
        await pilot.pause()
        assert out.value == "alice-neo"
        # changing another field no longer rewrites the name
        app.screen.query_one("#t-objective", Select).value = "kl-letter"
        await pilot.pause()
        assert out.value == "alice-neo"
        assert "--out alice-neo" in visible_text(app.screen.query_one("#train-preview", Static))


async def test_the_command_follows_every_field_even_when_the_form_is_not_valid_yet(with_data):
    app = WorkbenchApp(with_data, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        preview = screen.query_one("#train-preview", Static)
        screen.query_one("#t-objective", Select).value = "instruct"  # needs an instruction dataset
        await pilot.pause()
        assert "--objective instruct" in visible_text(preview)
        problem = visible_text(screen.query_one("#train-problem", Label))
        assert problem and "--" not in problem  # worded for the form, no CLI flags
        screen.query_one("#t-method", Select).value = "lora"
        screen.query_one("#t-lora_r", Input).value = "4"
        await pilot.pause()
        assert "--method lora" in visible_text(preview) and "--lora-r 4" in visible_text(preview)
        screen.query_one("#t-dataset", Select).value = "(none)"
        await pilot.pause()
        assert "(choose a Dataset)" in visible_text(screen.query_one("#train-problem", Label))


async def test_after_a_launch_the_next_job_starts_from_the_defaults(with_data):
    app = WorkbenchApp(with_data, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#t-objective", Select).value = "kl-letter"
        for name, value in (("steps", "2"), ("batch", "2"), ("seq", "16"), ("eval_every", "1")):
            screen.query_one(f"#t-{name}", Input).value = value
        await pilot.pause()
        assert visible_text(screen.query_one("#train-problem", Label)) == ""
        await pilot.press("ctrl+r")
        await settle(pilot)
        job = app.ctx.registry.list_jobs()[-1]
        assert job.config["objective"] == "kl-letter"
        assert app.screen.query_one("#train-tabs").active == "jobs-pane"
        await pilot.press("n")
        await pilot.pause()
        assert screen.query_one("#t-objective", Select).value == "causal"
        assert screen.query_one("#t-steps", Input).value == "100"
        assert screen.query_one("#t-out", Input).value not in ("", job.out_model)  # a fresh suggestion
        from workbench.core.jobs import cancel_job

        cancel_job(app.ctx, job.id, force=True)
