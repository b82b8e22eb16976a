"""Recipes: the list of recipes, a run with live progress, and the report with each figure marked as
matching the original or not. Opened from the command palette ("Recipes"); Esc goes back.

The run happens in a thread worker (`run_recipe_worker`) that imports nothing from the app: it posts
RecipeProgress / RecipeFinished / RecipeFailed messages, and the handlers here update the widgets."""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Log, ProgressBar, Static

VERDICT = {True: "✓ matches", False: "✗ does not match", None: "·"}


class RecipeProgress(Message):
    def __init__(self, event):
        super().__init__()
        self.event = event


class RecipeFinished(Message):
    def __init__(self, report: dict):
        super().__init__()
        self.report = report


class RecipeFailed(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


def run_recipe_worker(ctx, name: str, quick: bool, post: Callable[[Message], object],
                      stop: threading.Event) -> None:
    """Run a recipe off the event loop; everything it says goes up as messages."""
    from ...core.recipes.runner import run_recipe
    from ...core.recipes.spec import load_recipe
    from ..format import one_line

    try:
        recipe = load_recipe(ctx, name)
        report = run_recipe(ctx, recipe, quick=quick, on_event=lambda e: post(RecipeProgress(e)),
                            should_stop=stop.is_set)
    except Exception as error:  # noqa: BLE001 - shown as a notification, never raised into the app
        post(RecipeFailed(one_line(error)))
        return
    post(RecipeFinished(report))


def figure_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    from ...core.recipes.report import format_value

    return [(f["name"], format_value(f["seed"]), format_value(f["measured"]), f["unit"] or "",
             VERDICT[f["match"]]) for f in report.get("figures", [])]


class RecipesScreen(Screen):
    CSS_PATH = "recipes.tcss"
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("r", "run(False)", "Run"),
        Binding("q", "run(True)", "Run quick"),
        Binding("o", "open_report", "Latest report"),
        Binding("s", "stop", "Stop"),
    ]

    def __init__(self):
        super().__init__()
        self._stop = threading.Event()
        self._recipe_running = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="recipes-body"):
            with Vertical(id="recipes-left"):
                yield Label("Recipes", classes="section-title")
                yield DataTable(id="recipes-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="recipe-detail")
            with Vertical(id="recipes-right"):
                yield Label("", id="run-status")
                # A total from the start: with none, an idle bar animates "--%" as if something ran.
                yield ProgressBar(total=1, id="run-progress", show_eta=False)
                yield Log(id="run-log", max_lines=400)
                yield Label("Figures: ours beside the original's", classes="section-title")
                yield DataTable(id="figures-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    @property
    def ctx(self):
        return self.app.ctx

    def on_mount(self) -> None:
        from ...core.recipes.spec import list_recipes

        self.query_one("#figures-table", DataTable).add_columns("figure", "original", "ours", "unit", "verdict")
        table = self.query_one("#recipes-table", DataTable)
        table.add_columns("name", "from", "title")
        recipes, problems = list_recipes(self.ctx)
        self._recipes = {r.name: r for r in recipes}
        for recipe in recipes:
            table.add_row(recipe.name, recipe.origin, recipe.title, key=recipe.name)
        for line in problems:
            self.notify(line, severity="warning", timeout=8)
        self._show_detail(recipes[0].name if recipes else None)

    def selected(self) -> str | None:
        table = self.query_one("#recipes-table", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowHighlighted, "#recipes-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.row_key.value if event.row_key else None)

    def _show_detail(self, name: str | None) -> None:
        recipe = self._recipes.get(name) if name else None
        text = "" if recipe is None else (
            f"{recipe.title}\n\n{recipe.description.strip()}\n\n"
            + "\n".join(f"{i}. {s.id} ({s.kind})" for i, s in enumerate(recipe.steps, 1)))
        self.query_one("#recipe-detail", Static).update(text)

    # ------------------------------------------------------------ running

    def action_run(self, quick: bool) -> None:
        name = self.selected()
        if name is None or self._recipe_running:
            self.notify("a recipe is already running" if self._recipe_running else "no recipe selected",
                        severity="warning")
            return
        self._recipe_running = True
        self._stop.clear()
        self.query_one("#run-log", Log).clear()
        self.query_one("#figures-table", DataTable).clear()
        self.query_one("#run-status", Label).update(f"running {name}{' (quick)' if quick else ''}...")
        self._run(name, quick)

    @work(thread=True, exclusive=True, group="recipe", exit_on_error=False)
    def _run(self, name: str, quick: bool) -> None:
        run_recipe_worker(self.ctx, name, quick, self.post_message, self._stop)

    def action_stop(self) -> None:
        if self._recipe_running:
            self._stop.set()
            self.query_one("#run-status", Label).update("stopping after the current step...")

    def on_recipe_progress(self, message: RecipeProgress) -> None:
        event = message.event
        bar = self.query_one("#run-progress", ProgressBar)
        if event.kind == "progress" and event.of:
            bar.update(total=event.of, progress=event.done or 0)
            return
        log = self.query_one("#run-log", Log)
        if event.kind == "start":
            bar.update(total=None, progress=0)
            self.query_one("#run-status", Label).update(f"step {event.index}/{event.total}: {event.step}")
            log.write_line(f"[{event.index}/{event.total}] {event.step} ({event.step_kind})")
        elif event.kind == "note":
            log.write_line(f"  {event.message}")
        elif event.kind == "done":
            log.write_line(f"  {event.message}")
        elif event.kind == "failed":
            log.write_line(f"  failed: {event.message}")

    def on_recipe_finished(self, message: RecipeFinished) -> None:
        self._recipe_running = False
        failed = bool(message.report.get("failure"))
        self.query_one("#run-progress", ProgressBar).update(total=1, progress=0 if failed else 1)
        if not self.is_current:  # the user is elsewhere: say it ended
            report = message.report
            self.app.notify(f"recipe {report['recipe']}: {report['status']} in {report['seconds']:.0f} s "
                            "(Recipes in ctrl+p shows the report)", timeout=10)
        self.show_report(message.report)
        if message.report.get("failure"):
            self.notify(message.report["failure"]["error"], title="recipe stopped", severity="error", timeout=8)
        changed = getattr(self.app, "registry_changed", None)
        if changed is not None:  # other screens refresh their tables
            changed.publish("models")

    def on_recipe_failed(self, message: RecipeFailed) -> None:
        self._recipe_running = False
        self.query_one("#run-progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#run-status", Label).update("")
        self.notify(message.text, severity="error", timeout=8)

    # ------------------------------------------------------------ reports

    def show_report(self, report: dict) -> None:
        status = f"{report['recipe']}: {report['status']} in {report['seconds']:.0f} s"
        where = f"  ({report['report_path']})" if report.get("report_path") else ""
        self.query_one("#run-status", Label).update(status + where)
        table = self.query_one("#figures-table", DataTable)
        table.clear()
        for row in figure_rows(report):
            table.add_row(*row)

    def action_open_report(self) -> None:
        from ...core.recipes.report import list_reports, load_report
        from ...core.recipes.runner import reports_dir

        name = self.selected()
        for path in list_reports(reports_dir(self.ctx)):
            report = load_report(path)
            if report.get("recipe") == name:
                self.show_report(report)
                return
        self.notify(f"no report of {name} yet: run it with r (or q for quick)", severity="warning")

    def action_close(self) -> None:
        if self._recipe_running:
            self.notify("the recipe runs on: Recipes (ctrl+p) shows it again; s there stops it")
        self.app.close_recipes()
