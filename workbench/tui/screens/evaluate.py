"""6 Evaluate: models and data, the evaluation engine's metrics with progress, a results table (with the
earlier stored value of each result beside it), the style-attribution matrices, and a history table of
every stored result of the chosen models side by side."""

from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (Button, DataTable, Input, Label, ProgressBar, Select, SelectionList,
                             TabbedContent, TabPane)

from ...core.errors import WorkbenchError
from ..format import number
from .base import WorkbenchScreen

METRICS = [("perplexity (ppl)", "ppl"), ("x-token ratio", "x-ratio"), ("style attribution", "style"),
           ("BLEU (needs refs)", "bleu"), ("ROUGE (needs refs)", "rouge")]
SHOWN = ("perplexity", "bits_per_byte", "x_ratio", "bleu", "rouge1", "rouge2", "rougeL",
         "style_self_attribution")
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "word_perplexity")
PROGRESS_EVERY_S = 0.1


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
    def __init__(self, report: dict, before_id: int, stopped: bool = False):
        super().__init__()
        self.report = report
        self.before_id = before_id
        self.stopped = stopped


class EvaluateScreen(WorkbenchScreen):
    MODE = "evaluate"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+y", "show_history", "History"),
    ]

    def __init__(self):
        super().__init__()
        self.running = False
        self.stop_event = threading.Event()
        self._pending_model: str | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="eval-body"):
            with VerticalScroll(id="eval-form", classes="panel") as form:
                form.border_title = "Evaluate"
                yield Label("Models (space toggles)")
                yield SelectionList[str](id="eval-models")
                yield Label("Metrics")
                yield SelectionList[str](*[(label, value, value == "ppl") for label, value in METRICS],
                                         id="eval-metrics")
                yield Label("Datasets (ppl: one; style: several)")
                yield SelectionList[str](id="eval-data")
                yield Label("Split")
                yield Select([(s, s) for s in ("test", "val", "train")], value="test", allow_blank=False,
                             id="eval-split", compact=True)
                yield Label("References JSONL (bleu/rouge)")
                yield Input("", placeholder="path/to/refs.jsonl", id="eval-refs", compact=True)
                yield Label("", id="eval-problem", classes="error", markup=False)
                yield Button("Run (ctrl+r)", variant="primary", id="eval-run")
            with Vertical(id="eval-results"):
                yield Label("Pick models, metrics and data, then ctrl+r.", id="eval-stage", classes="status",
                            markup=False)
                yield ProgressBar(total=1, show_eta=False, id="eval-progress")
                with TabbedContent(id="eval-tabs"):
                    with TabPane("Results", id="results-pane"):
                        yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
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
        self.query_one("#eval-models", SelectionList).focus()

    # ------------------------------------------------------------ choices

    def refresh_data(self) -> None:
        try:
            models = self.query_one("#eval-models", SelectionList)
            data = self.query_one("#eval-data", SelectionList)
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
        models.clear_options()
        models.add_options([(n, n, n in chosen) for n in names])
        datasets = [d.name for d in registry.list_datasets()]
        chosen_data = set(data.selected) or set(datasets[:1])
        data.clear_options()
        data.add_options([(n, n, n in chosen_data) for n in datasets])
        self.check_request()
        self.show_history()

    def use_model(self, name: str) -> None:
        """Called by "evaluate" on the Models screen: that model alone is selected."""
        self._pending_model = name
        self.refresh_data()

    def build(self):
        from ...core.evaluation.service import EvalRequest

        models = list(self.query_one("#eval-models", SelectionList).selected)
        metrics = list(self.query_one("#eval-metrics", SelectionList).selected)
        data = list(self.query_one("#eval-data", SelectionList).selected)
        refs = self.query_one("#eval-refs", Input).value.strip() or None
        if not models:
            raise WorkbenchError("select at least one model")
        if not metrics:
            raise WorkbenchError("select at least one metric")
        needs_data = "ppl" in metrics or "style" in metrics
        request = EvalRequest(metrics=metrics, data=data if needs_data else [],
                              split=str(self.query_one("#eval-split", Select).value), refs=refs)
        request.validate()
        if "style" in metrics and len(models) < 2:
            raise WorkbenchError("style attribution compares models: select two or more")
        return models, request

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

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
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

    # ------------------------------------------------------------ running

    def action_run(self) -> None:
        if self.running:
            self.notify("an evaluation is running (Esc stops it)", severity="warning")
            return
        try:
            models, request = self.build()
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
        self.run_evaluation(models, request, before_id, self.stop_event)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def run_evaluation(self, models: list[str], request, before_id: int, stop: threading.Event) -> None:
        from ...core.evaluation.service import evaluate

        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self.post_message(EvalProgress(done, total))

        try:
            report = evaluate(self.ctx, models, request, cache=self.wb.model_cache, on_progress=progress,
                              on_stage=lambda text: self.post_message(EvalStage(text)),
                              on_info=lambda text: self.post_message(EvalStage(text)),
                              should_stop=stop.is_set)
            self.post_message(EvalFinished(report, before_id))
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

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.running = False
        self.query_one("#eval-run", Button).disabled = False
        report = message.report
        cached = all(r.get("cached") for r in report["results"])
        self.query_one("#eval-stage", Label).update(
            "done (from the registry: same weights, data and settings)" if cached else "done")
        progress = self.query_one("#eval-progress", ProgressBar)
        progress.update(total=1, progress=1)
        self.show_results(report, message.before_id)
        if "style" in report:
            self.show_style(report["style"])
        self.show_history()
        self.wb.registry_changed.publish("evaluations")

    def show_results(self, report: dict, before_id: int) -> None:
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        registry = self.ctx.registry
        for result in report["results"]:
            model = result["model"]
            earlier_rows = [e for e in registry.evaluations(model=model) if e.id <= before_id]
            for metric in SHOWN:
                if metric not in result["metrics"]:
                    continue
                value = result["metrics"][metric]
                target = self._target(result, metric)
                earlier = [e for e in earlier_rows if e.metric == metric and (e.target or "") == target]
                before = earlier[-1].value if earlier else None
                change = ""
                if before is not None and before != 0 and value is not None:
                    pct = (value - before) / abs(before) * 100
                    better = (value < before) if metric in LOWER_IS_BETTER else (value > before)
                    change = f"{pct:+.1f}%" + ("" if abs(pct) < 0.05 else (" better" if better else " worse"))
                table.add_row(model, metric, target or "-", number(value), number(before), change,
                              "cached" if result.get("cached") else "")
        self.query_one("#eval-tabs", TabbedContent).active = "results-pane"

    @staticmethod
    def _target(result: dict, metric: str) -> str:
        settings = result.get("settings", {})
        if metric in ("perplexity", "bits_per_byte", "word_perplexity"):
            return settings.get("ppl", {}).get("target", "")
        if metric.startswith("rouge") or metric == "bleu":
            return f"refs:{settings.get('refs', {}).get('file', '')}"
        return ""

    def show_style(self, style: dict) -> None:
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
            self.query_one("#eval-stage", Label).update(
                f"done: {accuracy:.0%} of samples attributed to the model that wrote them")

    def show_history(self) -> None:
        """Every stored result of the selected models: one row per (metric, target), latest values."""
        try:
            table = self.query_one("#history-table", DataTable)
            models = list(self.query_one("#eval-models", SelectionList).selected)
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
