"""6 Evaluate: models and data, the evaluation engine's metrics with progress, a results table (with the
earlier stored value of each result beside it) and, under it, the generated samples behind the
highlighted score with their generation settings and warnings when they are empty or degenerate; the
style-attribution matrices; and a history table of every stored result of the chosen models."""

from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (Button, Collapsible, DataTable, Input, Label, ProgressBar, Select, Static,
                             TabbedContent, TabPane)

from ...core.errors import WorkbenchError
from ..format import number
from ..widgets.hinted_scroll import HintedScroll
from ..widgets.settings import SettingsPanel
from ..widgets.tables import selected_key
from ..widgets.toggles import CheckList
from .base import WorkbenchScreen
from .dialogs import FilePickerDialog
from .eval_results import report_warnings, result_rows, samples_view

METRICS = [("perplexity", "ppl"), ("x-token ratio", "x-ratio"), ("style attribution", "style"),
           ("BLEU (refs)", "bleu"), ("ROUGE (refs)", "rouge"), ("token F1 (refs)", "f1"),
           ("exact match (refs)", "exact-match")]
REF_TASKS = ("bleu", "rouge", "f1", "exact-match")
PROGRESS_EVERY_S = 0.1
GENERATES = ("x-ratio", "style") + REF_TASKS


class EvalStage(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class EvalProgress(Message):
    def __init__(self, done: int, total: int):
        super().__init__()
        self.done = done
        self.total = total


class EvalFinished(Message):
    def __init__(self, report: dict, before_id: int):
        super().__init__()
        self.report = report
        self.before_id = before_id


def merge_reports(reports: list[dict]) -> dict:
    merged: dict = {"results": []}
    for report in reports:
        merged["results"] += report["results"]
        if "style" in report:
            merged["style"] = report["style"]
    return merged


class EvaluateScreen(WorkbenchScreen):
    """Measure models: tick models, metrics and datasets, then ctrl+r. Perplexity runs on every ticked
    dataset; the samples behind each score show under the results."""

    MODE = "evaluate"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+o", "pick_refs", "Refs file", tooltip="Pick a references JSONL for BLEU/ROUGE"),
        Binding("ctrl+y", "show_history", "History"),
    ]

    def __init__(self):
        super().__init__()
        self.running = False
        self.stop_event = threading.Event()
        self._pending_model: str | None = None
        self.report: dict | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="eval-body"):
            with Vertical(id="eval-side", classes="panel") as side:
                side.border_title = "Evaluate"
                with HintedScroll(id="eval-form"):
                    yield Label("Models (space ticks)")
                    yield CheckList(id="eval-models")
                    yield Label("Metrics")
                    yield CheckList(*[(label, value, value == "ppl") for label, value in METRICS],
                                    id="eval-metrics")
                    yield Label("Datasets")
                    yield CheckList(id="eval-data")
                    yield Label("Split")
                    yield Select([(s, s) for s in ("test", "val", "train")], value="test", allow_blank=False,
                                 id="eval-split", compact=True)
                    yield Label("References JSONL (ctrl+o picks)")
                    yield Input("", placeholder="for BLEU, ROUGE, F1, exact match", id="eval-refs", compact=True)
                    with Collapsible(title="Generation settings", id="eval-generation"):
                        yield Label("X-ratio: tokens per sample")
                        yield Input("200", id="eval-tokens", compact=True, type="integer")
                        yield Label("X-ratio: samples")
                        yield Input("4", id="eval-samples-n", compact=True, type="integer")
                        yield SettingsPanel(id="eval-settings")
                yield Label("", id="eval-problem", classes="error", markup=False)
                yield Button("Run (ctrl+r)", variant="primary", id="eval-run", compact=True)
            with Vertical(id="eval-results"):
                yield Label("Tick models, metrics and data, then ctrl+r.", id="eval-stage", classes="status",
                            markup=False)
                yield ProgressBar(total=1, show_eta=False, id="eval-progress")
                with TabbedContent(id="eval-tabs"):
                    with TabPane("Results", id="results-pane"):
                        yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
                        with VerticalScroll(id="eval-samples-box") as box:
                            box.border_title = "Samples"
                            yield Static("", id="eval-samples")
                    with TabPane("Style", id="style-pane"):
                        with VerticalScroll():
                            yield Label("Perplexity: rows models, columns datasets (lowest = best fit)",
                                        classes="hint")
                            yield DataTable(id="style-ppl", cursor_type="none")
                            yield Label("Samples attributed: rows generator, columns attributed to",
                                        classes="hint")
                            yield DataTable(id="style-confusion", cursor_type="none")
                    with TabPane("History", id="history-pane"):
                        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#eval-table", DataTable).add_columns("Model", "Metric", "On", "Value", "Earlier",
                                                             "Change", "")
        self.refresh_data()
        self.query_one("#eval-models", CheckList).focus()

    # ------------------------------------------------------------ choices

    @staticmethod
    def _refill(checks: CheckList, names: list[str], chosen: set[str]) -> None:
        """Replace the options only when the names changed, keeping the cursor where it was."""
        current = [checks.get_option_at_index(i).value for i in range(checks.option_count)]
        if current == names:
            for name in names:
                (checks.select if name in chosen else checks.deselect)(name)
            return
        highlighted = checks.highlighted
        checks.clear_options()
        checks.add_options([(n, n, n in chosen) for n in names])
        if highlighted is not None and names:
            checks.highlighted = min(highlighted, len(names) - 1)

    def refresh_data(self) -> None:
        try:
            models = self.query_one("#eval-models", CheckList)
            data = self.query_one("#eval-data", CheckList)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        registry = self.ctx.registry
        names = [m.name for m in registry.list_models()]
        chosen = set(models.selected)
        if self._pending_model:
            chosen = {self._pending_model}
            self._pending_model = None
        if not chosen and names:
            chosen = {names[0]}
        self._refill(models, names, chosen)
        datasets = [d.name for d in registry.list_datasets()]
        self._refill(data, datasets, set(data.selected) or set(datasets[:1]))
        self.check_request()
        self.show_history()

    def use_model(self, name: str) -> None:
        """Called by "evaluate" on the Models screen: that model alone is ticked."""
        self._pending_model = name
        self.refresh_data()

    def build(self):
        """(models, requests): one request per dataset for perplexity, one for the rest. WorkbenchError
        worded for this screen when something is missing."""
        from ...core.evaluation.request import EvalRequest

        models = list(self.query_one("#eval-models", CheckList).selected)
        metrics = list(self.query_one("#eval-metrics", CheckList).selected)
        data = list(self.query_one("#eval-data", CheckList).selected)
        refs = self.query_one("#eval-refs", Input).value.strip() or None
        if not models:
            raise WorkbenchError("tick at least one model")
        if not metrics:
            raise WorkbenchError("tick at least one metric")
        if ("ppl" in metrics or "style" in metrics) and not data:
            raise WorkbenchError("perplexity and style need a dataset: tick one under Datasets")
        if any(task in metrics for task in REF_TASKS) and not refs:
            raise WorkbenchError("BLEU, ROUGE, F1 and exact match need a references file (ctrl+o picks one)")
        if "style" in metrics and len(models) < 2:
            raise WorkbenchError("style attribution compares models: tick two or more")
        try:
            generation = self.query_one("#eval-settings", SettingsPanel).settings().to_dict()
            tokens = int(self.query_one("#eval-tokens", Input).value or 0)
            samples = int(self.query_one("#eval-samples-n", Input).value or 0)
        except ValueError:
            raise WorkbenchError("x-ratio tokens and samples are whole numbers") from None
        if "x-ratio" in metrics and (tokens < 1 or samples < 1):
            raise WorkbenchError("x-ratio needs at least 1 token per sample and 1 sample")
        split = str(self.query_one("#eval-split", Select).value)
        common = dict(split=split, refs=refs, generation=generation, tokens=tokens or 200,
                      samples=samples or 4)
        requests = [EvalRequest(metrics=["ppl"], data=[name], **common)
                    for name in (data if "ppl" in metrics else [])]
        rest = [m for m in metrics if m != "ppl"]
        if rest:
            requests.append(EvalRequest(metrics=rest, data=data if "style" in rest else [], **common))
        for request in requests:
            request.validate()
        return models, requests

    def check_request(self) -> bool:
        try:
            problem = self.query_one("#eval-problem", Label)
        except Exception:  # noqa: BLE001
            return False
        try:
            self.build()
        except WorkbenchError as error:
            problem.update(str(error))
            return False
        problem.update("")
        return True

    def on_selection_list_selected_changed(self, event: CheckList.SelectedChanged) -> None:
        self.check_request()
        if event.selection_list.id == "eval-models":
            self.show_history()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.check_request()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.check_request()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "eval-run":
            event.stop()
            self.action_run()

    def action_pick_refs(self) -> None:
        def done(values: dict | None) -> None:
            if values:
                self.query_one("#eval-refs", Input).value = values["path"]

        self.app.push_screen(FilePickerDialog(
            "References for BLEU / ROUGE", None, [],
            note='JSONL, one {"prompt": ..., "reference": ...} per line', suffixes=(".jsonl", ".json")), done)

    # ------------------------------------------------------------ running

    def action_run(self) -> None:
        if self.running:
            self.notify("an evaluation is running (Esc stops it)", severity="warning")
            return
        try:
            models, requests = self.build()
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        rows = self.ctx.registry.evaluations()
        before_id = rows[-1].id if rows else 0
        self.running = True
        self.stop_event = threading.Event()
        self.query_one("#eval-run", Button).disabled = True
        self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-stage", Label).update(f"evaluating {', '.join(models)}...")
        self.run_evaluation(models, requests, before_id, self.stop_event)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def run_evaluation(self, models: list[str], requests: list, before_id: int, stop: threading.Event) -> None:
        from ...core.evaluation.service import evaluate

        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self.post_message(EvalProgress(done, total))

        try:
            reports = []
            for request in requests:  # perplexity per dataset first: style reuses those figures
                report = evaluate(self.ctx, models, request, cache=self.wb.model_cache, on_progress=progress,
                                  on_stage=lambda text: self.post_message(EvalStage(text)),
                                  on_info=lambda text: self.post_message(EvalStage(text)),
                                  should_stop=stop.is_set)
                for result in report["results"]:
                    result["generation"] = request.generation
                reports.append(report)
            self.post_message(EvalFinished(merge_reports(reports), before_id))
        except Exception as error:  # noqa: BLE001 - reported as a notification
            self.fail("evaluate", error)

    def on_eval_stage(self, message: EvalStage) -> None:
        self.query_one("#eval-stage", Label).update(message.text)

    def on_eval_progress(self, message: EvalProgress) -> None:
        self.query_one("#eval-progress", ProgressBar).update(total=max(1, message.total), progress=message.done)

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        if group == "evaluate" and not ok:
            self.running = False
            self.query_one("#eval-run", Button).disabled = False
            self.query_one("#eval-stage", Label).update("stopped" if self.stop_event.is_set() else "failed")

    def action_stop(self) -> None:
        if self.running:
            self.stop_event.set()
            self.query_one("#eval-stage", Label).update("stopping...")
        else:
            self.leave_text_field()

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.running = False
        self.query_one("#eval-run", Button).disabled = False
        report = self.report = message.report
        cached = all(r.get("cached") for r in report["results"])
        stage = "done (from the registry: same weights, data and settings)" if cached else "done"
        self.query_one("#eval-progress", ProgressBar).update(total=1, progress=1)
        self.show_results(report, message.before_id)
        if "style" in report:
            stage = self.show_style(report["style"]) or stage
        warnings = report_warnings(report)
        if warnings:
            stage = f"{stage}; warning: {'; '.join(warnings)}"
            self.notify("; ".join(warnings), severity="warning", timeout=10)
        self.query_one("#eval-stage", Label).update(stage)
        self.show_history()
        self.wb.registry_changed.publish("evaluations")

    def show_results(self, report: dict, before_id: int) -> None:
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        registry = self.ctx.registry
        earlier = {r["model"]: [e for e in registry.evaluations(model=r["model"]) if e.id <= before_id]
                   for r in report["results"]}
        for key, cells in result_rows(report, earlier):
            table.add_row(*cells, key=key)
        self.show_samples()
        self.query_one("#eval-tabs", TabbedContent).active = "results-pane"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "eval-table":
            self.show_samples()

    def show_samples(self) -> None:
        view = self.query_one("#eval-samples", Static)
        if self.report is None:
            view.update("")
            return
        view.update(samples_view(self.report, selected_key(self.query_one("#eval-table", DataTable))))

    def show_style(self, style: dict) -> str | None:
        models, datasets = style.get("models", []), style.get("datasets", [])
        ppl = self.query_one("#style-ppl", DataTable)
        ppl.clear(columns=True)
        ppl.add_columns("model", *datasets)
        for model, row in zip(models, style.get("perplexity", [])):
            best = [style.get("best_model_per_dataset", {}).get(d) == model for d in datasets]
            ppl.add_row(model, *[number(v) + (" *" if b else "") for v, b in zip(row, best)])
        confusion = self.query_one("#style-confusion", DataTable)
        confusion.clear(columns=True)
        confusion.add_columns("generator", *models)
        for model, row in zip(models, style.get("confusion", [])):
            confusion.add_row(model, *[str(v) for v in row])
        accuracy = style.get("accuracy")
        if accuracy is not None:
            return f"done: {accuracy:.0%} of samples attributed to the model that wrote them"
        return None

    def show_history(self) -> None:
        """Every stored result of the ticked models: one row per (metric, target), latest values."""
        try:
            table = self.query_one("#history-table", DataTable)
            models = list(self.query_one("#eval-models", CheckList).selected)
        except Exception:  # noqa: BLE001
            return
        registry = self.ctx.registry
        latest: dict[str, dict[tuple[str, str], float]] = {}
        for model in models:
            for e in registry.evaluations(model=model):
                latest.setdefault(model, {})[(e.metric, e.target or "")] = e.value
        keys = sorted({k for values in latest.values() for k in values})
        table.clear(columns=True)
        table.add_columns("Metric", "On", *models)
        for metric, target in keys:
            table.add_row(metric, target or "-",
                          *[number(latest.get(m, {}).get((metric, target))) for m in models])

    def action_show_history(self) -> None:
        self.query_one("#eval-tabs", TabbedContent).active = "history-pane"
