"""Forms that don't trap: the file picker navigates (.., typed paths, Tab completion, last folder), fills
the dataset name from the file; checkboxes say on/off with a ✓; evaluation runs perplexity on several
datasets with x-ratio in one go and shows the samples behind each score."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Label, OptionList, Static

from workbench.core.context import open_workspace
from workbench.core.evaluation.samples import blank_reply_note, sample_warnings
from workbench.tui.app import WorkbenchApp
from workbench.tui.widgets.toggles import CheckList

from tui_helpers import SIZE, TEXT, settle, table_column, visible_text


async def test_file_picker_walks_folders_completes_and_names_the_dataset(home, tmp_path):
    books = tmp_path / "books"
    (books / "poe").mkdir(parents=True)
    (books / "alice in wonderland.txt").write_text(TEXT)
    app = WorkbenchApp(home, start_mode="data")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        path = dialog.query_one("#path", Input)
        assert path.value == str(Path.home()) + "/"  # starts at the home folder
        path.value = str(books) + "/"  # a typed folder moves the list there
        await pilot.pause()
        entries = dialog.query_one("#entries", OptionList)
        labels = [str(entries.get_option_at_index(i).prompt) for i in range(entries.option_count)]
        assert labels == ["..", "poe/", "alice in wonderland.txt"]
        path.value = ""
        await pilot.press(*str(books / "al"), "tab")  # Tab completes the file name
        await pilot.pause()
        assert path.value == str(books / "alice in wonderland.txt")
        assert dialog.query_one("#f-name", Input).value == "alice-in-wonderland"  # from the file name
        await pilot.press("tab")  # nothing more to complete: Tab moves on to the list
        assert dialog.focused is entries
        path.focus()
        await pilot.press("down")  # so does Down
        assert dialog.focused is entries
        path.focus()
        await pilot.press("x")  # typing appends: focus does not select the path
        assert path.value == str(books / "alice in wonderland.txtx")
        path.value = str(books / "alice in wonderland.txt")
        entries.highlighted = 0
        entries.action_select()  # `..` goes up a folder
        await pilot.pause()
        assert path.value == str(tmp_path) + "/"
        path.value = str(books / "alice in wonderland.txt")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert app.ctx.registry.get_dataset("alice-in-wonderland").tokens > 0
        await pilot.press("a")  # the next picker starts in the folder used last
        await pilot.pause()
        assert app.screen.query_one("#path", Input).value == str(books) + "/"


async def test_checkboxes_and_check_lists_show_a_tick_when_on(home):
    app = WorkbenchApp(home, start_mode="evaluate")
    async with app.run_test(size=(80, 24)) as pilot:
        metrics = app.screen.query_one("#eval-metrics", CheckList)
        first, second = (metrics.render_line(i).text for i in range(2))
        assert first.startswith("▐✓▌ perplexity") and second.startswith("▐ ▌ x-token")
        app.screen.query_one("#eval-generation").collapsed = False
        await pilot.pause()
        sampling = app.screen.query_one("#set-do_sample")
        assert str(sampling.label) == "Sampling: off" and sampling.BUTTON_INNER == " "
        sampling.value = True
        await pilot.pause()
        assert str(sampling.label) == "Sampling: on" and sampling.BUTTON_INNER == "✓"


async def test_evaluate_runs_perplexity_on_each_dataset_and_x_ratio_together_and_shows_samples(home, tmp_path):
    from workbench.core.data import add_dataset

    ctx = open_workspace(home)
    for name in ("one", "two"):
        source = tmp_path / f"{name}.txt"
        source.write_text(TEXT)
        add_dataset(ctx, name, source)
    app = WorkbenchApp(home, start_mode="evaluate")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#eval-metrics", CheckList).select("x-ratio")
        screen.query_one("#eval-data", CheckList).select_all()
        screen.query_one("#eval-tokens", Input).value = "4"
        screen.query_one("#eval-samples-n", Input).value = "2"
        await pilot.pause()
        assert visible_text(screen.query_one("#eval-problem", Label)) == ""
        models = screen.query_one("#eval-models", CheckList)
        models.highlighted = 0
        await pilot.press("ctrl+r")
        await settle(pilot)
        table = screen.query_one("#eval-table", DataTable)
        rows = [(table.get_row_at(i)[1], table.get_row_at(i)[2]) for i in range(table.row_count)]
        assert ("perplexity", "one:test") in rows and ("perplexity", "two:test") in rows
        assert ("x_ratio", "-") in rows
        table.move_cursor(row=[m for m, _ in rows].index("x_ratio"))
        await pilot.pause()
        samples = visible_text(screen.query_one("#eval-samples", Static))
        assert "base rate" in samples and "greedy" in samples and samples.count("%:") == 2
        # the x-ratio's own length, not the settings panel's "up to N new tokens"
        assert "exactly 4 new tokens per sample" in samples and "up to" not in samples
        assert models.highlighted == 0  # the list cursor stays where it was after the run
        assert table_column(table)[0] == "tiny-neo"


def test_sample_warnings_say_in_words_what_is_wrong():
    assert sample_warnings(["\n\n", "\n", "\n\n\n", "\n", "\n"]) == [
        "all 5 answers are empty: the model only produced newlines"]
    assert sample_warnings(["ok then", " "]) == ["1 of 2 answers are empty"]
    assert "repeat one word" in sample_warnings(["the the the the the", "fine text here"])[0]
    assert sample_warnings(["a normal answer", "another one"]) == []
    assert blank_reply_note("\n" * 64, 64) == "no visible text: 64 newline tokens; try sampling"
    assert blank_reply_note("hello", 1) is None
