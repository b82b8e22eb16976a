"""The Recipes screen: lists recipes, runs one in a worker with live progress, marks each figure."""

from __future__ import annotations

from textual.widgets import DataTable, Log, ProgressBar

from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.recipes import RecipesScreen

from tui_helpers import SIZE, settle, select_row, table_column

TINY = """
name: tiny-gen
title: a tiny generation
steps:
  - {id: gen, kind: generate, with: {models: [tiny-neo], prompts: ["the cat"], settings: {max_new_tokens: 4}}}
figures:
  - {name: some distinct words, value: gen.distinct.greedy, seed: 0.0, match: at-least, unit: share}
  - {name: more than all words, value: gen.distinct.greedy, seed: 2.0, match: at-least, unit: share}
  - {name: just shown, value: gen.distinct.greedy}
"""


async def test_recipes_screen_lists_runs_and_marks_each_figure(home):
    (home / "recipes").mkdir()
    (home / "recipes" / "tiny-gen.yaml").write_text(TINY)
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        command = next(c for c in app.get_system_commands(app.screen) if c.title.startswith("Recipes"))
        command.callback()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        table = screen.query_one("#recipes-table", DataTable)
        assert {"like-x", "alice-vs-poe", "instruct", "generation", "tiny-gen"} <= set(table_column(table))
        bar = screen.query_one("#run-progress", ProgressBar)
        assert bar.total is not None and bar.percentage == 0  # idle: 0 %, not an animated "--%"
        select_row(table, "tiny-gen")
        await pilot.press("r")
        await settle(pilot)
        await pilot.pause()
        assert bar.percentage == 1
        log = "\n".join(screen.query_one("#run-log", Log).lines)
        assert "[1/1] gen (generate)" in log and "saved session" in log
        figures = screen.query_one("#figures-table", DataTable)
        assert table_column(figures, 4) == ["✓ matches", "✗ does not match", "·"]
        figures.clear()
        await pilot.press("o")  # the latest report, read back from reports/
        await pilot.pause()
        assert table_column(figures, 0) == ["some distinct words", "more than all words", "just shown"]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RecipesScreen) and app.current_mode == "models"
        command.callback()  # back again: the same screen, its run and figures still there
        await pilot.pause()
        assert app.screen is screen and table_column(figures, 0)[0] == "some distinct words"
