"""1 Models: the registry as a table, a detail pane (lineage, evaluations), and the model actions."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from ...core.errors import WorkbenchError
from ..format import human_count, number, when
from ..widgets.tables import refill, selected_key
from .base import WorkbenchScreen

PERPLEXITY_METRICS = ("perplexity", "ppl")
STARTER_NOTE = ("Preparing the starter models for this new workspace (about a minute the first time)... "
                "They appear here when ready; meanwhile press 2 to add data.")


def latest_perplexity(evaluations) -> str:
    """The newest perplexity with the dataset it was measured on: '512.2 on tiny:test', or '-'."""
    found = [e for e in evaluations if e.metric in PERPLEXITY_METRICS]
    if not found:
        return "-"
    target = found[-1].target or ""
    return f"{number(found[-1].value)} on {target}" if target else number(found[-1].value)


def _check_name(value: str) -> None:
    from ...core.models import validate_name

    validate_name(value)


def _check_int(label: str):
    def check(value: str) -> None:
        try:
            if int(value) < 1:
                raise ValueError
        except ValueError:
            raise WorkbenchError(f"{label} must be a whole number of at least 1") from None

    return check


class ModelsScreen(WorkbenchScreen):
    """The registered models: pick one, then chat with it (c), evaluate it (e) or fine-tune from it (f)."""

    MODE = "models"
    BINDINGS = [
        Binding("n", "new", "New", tooltip="Create a fresh model from a config"),
        Binding("i", "import_model", "Import", tooltip="Register a local folder or a hub id"),
        Binding("r", "rename", "Rename", show=False),
        Binding("d", "delete", "Delete"),
        Binding("c", "chat", "Chat", tooltip="Chat with the selected model"),
        Binding("e", "evaluate", "Eval", tooltip="Evaluate the selected model"),
        Binding("f", "finetune", "Tune", tooltip="Fine-tune from the selected model"),
        Binding("s", "serve", "Serve", show=False,
                tooltip="Start or stop an OpenAI-compatible server for the selected model"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="models-body"):
            table = DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            table.border_title = "Models"
            yield table
            with VerticalScroll(id="model-detail") as detail:
                detail.border_title = "Details"
                yield Static("", id="model-detail-text")

    def on_mount(self) -> None:
        table = self.query_one("#models-table", DataTable)
        table.add_columns("Name", "Params", "Arch", "Perplexity", "Parent", "Source", "Created")
        self._servers: dict = {}  # model name -> ServeProcess started with the s key
        self.refresh_data()
        table.focus()

    # ------------------------------------------------------------ data

    @property
    def selected(self) -> str | None:
        return selected_key(self.query_one("#models-table", DataTable))

    def refresh_data(self) -> None:
        try:
            table = self.query_one("#models-table", DataTable)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        from ...core.models.starter import CHAT_STARTER

        keep = self.selected or CHAT_STARTER  # a fresh screen starts on smollm2, the model to talk to
        registry = self.ctx.registry
        rows = []
        for record in registry.list_models():
            ppl = latest_perplexity(registry.evaluations(model=record.name))
            arch = record.arch + ("+lora" if record.adapter else "")
            rows.append((record.name, [record.name, human_count(record.params), arch, ppl,
                                       record.parent or "-", record.source, when(record.created_at)]))
        refill(table, rows, keep)
        status = self.wb.starter_status if self.wb.preparing_starter else ""
        table.border_subtitle = f"preparing: {status}" if status else ""
        self.show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        from ...core.templates import describe_mode, template_source

        text = self.query_one("#model-detail-text", Static)
        name = self.selected
        if name is None:
            text.update(f"{STARTER_NOTE}\n\n{self.wb.starter_status}" if self.wb.preparing_starter else
                        "No models yet: press n to create one, i to import a folder.")
            return
        registry = self.ctx.registry
        record = registry.find_model(name)
        if record is None:
            text.update("")
            return
        lineage, parent = [record.name], record.parent
        while parent and len(lineage) < 20:
            lineage.append(parent)
            found = registry.find_model(parent)
            parent = found.parent if found else None
        head = Text()
        head.append(record.name, style="bold")
        head.append(f"  {record.arch}{' LoRA adapter' if record.adapter else ''}, "
                    f"{record.params:,} parameters, context {record.context_length}\n")
        lines = Text()
        home = self.ctx.ws.home
        path = Path(record.path)
        shown = path.relative_to(home) if path.is_relative_to(home) else path
        lines.append(f"source   {record.source}{' (referenced in place)' if record.referenced else ''}\n")
        lines.append(f"folder   {shown}\n")
        lines.append(f"sha256   {(record.sha256 or '-')[:16]}\n")
        lines.append(f"prompted {describe_mode(template_source(record.path))}\n")
        lines.append("lineage  " + " <- ".join(lineage) + "\n")
        children = [c.name for c in registry.children_of(record.name)]
        if children:
            lines.append("children " + ", ".join(children) + "\n")
        if record.dataset or record.job_id:
            lines.append(f"trained  on {record.dataset or '-'} (job {record.job_id or '-'})\n")
        for key in ("final_train_loss", "final_val_loss", "objective", "method", "steps"):
            meta = record.meta or {}
            value = meta.get(key, (meta.get("config") or {}).get(key) if isinstance(meta.get("config"), dict) else None)
            if value is not None:
                lines.append(f"{key.replace('_', ' '):<8} {number(value) if isinstance(value, float) else value}\n")
        parts: list = [head, lines]
        evaluations = registry.evaluations(model=record.name)
        if evaluations:
            table = Table("metric", "on", "value", box=None, padding=(0, 1), header_style="bold")
            for e in evaluations[-12:]:
                table.add_row(e.metric, e.target or "-", number(e.value))
            parts += [Text("\nEvaluations", style="bold"), table]
        else:
            parts.append(Text("\nNo evaluations yet (press e).", style="dim"))
        text.update(Group(*parts))

    # ------------------------------------------------------------ actions

    def _need_selection(self) -> str | None:
        name = self.selected
        if name is None:
            self.notify("no model selected", severity="warning")
        return name

    def action_new(self) -> None:
        from .dialogs import FormDialog, FormField  # dialogs load on first use, not at first paint
        from ...core.models import ARCHITECTURES, STARTER_SHAPE

        fields = [
            FormField("name", "Name", placeholder="a new name", check=_check_name),
            FormField("arch", "Architecture", "gpt-neo", choices=list(ARCHITECTURES)),
            FormField("layers", "Layers", str(STARTER_SHAPE.layers), check=_check_int("layers")),
            FormField("hidden", "Hidden size", str(STARTER_SHAPE.hidden), check=_check_int("hidden size")),
            FormField("heads", "Heads", str(STARTER_SHAPE.heads), check=_check_int("heads")),
            FormField("context", "Context", str(STARTER_SHAPE.context), check=_check_int("context")),
        ]

        def validate(values: dict) -> None:
            if self.ctx.registry.find_model(values["name"]):
                raise WorkbenchError(f"a model named '{values['name']}' is already registered")
            if int(values["hidden"]) % int(values["heads"]):
                raise WorkbenchError(f"hidden ({values['hidden']}) must be a multiple of heads ({values['heads']})")

        self.app.push_screen(FormDialog("New model", fields, validate, "Create"), self._create)

    def _create(self, values: dict | None) -> None:
        if not values:
            return
        from ...core.models import ModelShape, create_model

        shape = ModelShape(int(values["layers"]), int(values["hidden"]), int(values["heads"]),
                           int(values["context"]))
        ws, registry = self.ctx.ws, self.ctx.registry
        self.notify(f"creating '{values['name']}'...")
        self.run_in_thread(
            "models", lambda: create_model(ws, registry, values["name"], values["arch"], shape),
            lambda r: f"created '{r.name}' ({r.arch}, {r.params:,} parameters)", changed="models")

    def action_import_model(self) -> None:
        from .dialogs import FormDialog, FormField

        fields = [
            FormField("name", "Name", placeholder="a new name", check=_check_name),
            FormField("source", "Folder or hub id", placeholder="a folder path or a hub id"),
            FormField("reference", "Reference the folder in place (don't copy)", False, flag=True),
        ]

        def validate(values: dict) -> None:
            if not values["source"]:
                raise WorkbenchError("give a model folder or a hub id")
            if self.ctx.registry.find_model(values["name"]):
                raise WorkbenchError(f"a model named '{values['name']}' is already registered")

        self.app.push_screen(FormDialog("Import a model", fields, validate, "Import"), self._import)

    def _import(self, values: dict | None) -> None:
        if not values:
            return
        from ...core.models import add_model

        ws, registry = self.ctx.ws, self.ctx.registry
        self.notify(f"importing '{values['name']}'...")
        self.run_in_thread(
            "models",
            lambda: add_model(ws, registry, values["name"], values["source"], copy=not values["reference"]),
            lambda result: f"registered '{result[0].name}': {result[1]}", changed="models")

    def action_rename(self) -> None:
        from .dialogs import FormDialog, FormField

        name = self._need_selection()
        if not name:
            return
        fields = [FormField("new", f"New name for '{name}'", name, check=_check_name)]

        def validate(values: dict) -> None:
            if values["new"] != name and self.ctx.registry.find_model(values["new"]):
                raise WorkbenchError(f"a model named '{values['new']}' is already registered")

        def done(values: dict | None) -> None:
            if not values or values["new"] == name:
                return
            from ...core.models import rename_model

            ws, registry = self.ctx.ws, self.ctx.registry
            self.run_in_thread("models", lambda: rename_model(ws, registry, name, values["new"]),
                               lambda r: f"renamed '{name}' to '{r.name}'", changed="models")

        self.app.push_screen(FormDialog("Rename model", fields, validate, "Rename"), done)

    def action_delete(self) -> None:
        from .dialogs import ConfirmDialog

        name = self._need_selection()
        if not name:
            return

        def done(answer: dict | None) -> None:
            if answer is None:
                return
            from ...core.models import remove_model

            registry = self.ctx.registry
            self.run_in_thread("models", lambda: remove_model(registry, name, delete_files=answer["checked"]),
                               lambda message: message, changed="models")

        self.app.push_screen(ConfirmDialog(f"Remove model '{name}' from the registry?",
                                           checkbox="Also delete its folder"), done)

    async def action_chat(self) -> None:
        name = self._need_selection()
        if name:
            await self.wb.open_chat(name)

    async def action_evaluate(self) -> None:
        name = self._need_selection()
        if name:
            await self.wb.open_evaluate(name)

    async def action_finetune(self) -> None:
        name = self._need_selection()
        if name:
            await self.wb.open_finetune(name)

    # ------------------------------------------------------------ serving (`workbench serve` as a child process)

    def action_serve(self) -> None:
        name = self._need_selection()
        if not name:
            return
        if name in self._servers:
            server = self._servers.pop(name)
            self.run_in_thread("serve", server.stop, f"stopped serving '{name}'")
            return
        from ...server.process import ServeProcess

        home = self.ctx.ws.home
        self.notify(f"starting a server for '{name}'...")
        self.run_in_thread("serve", lambda: (name, ServeProcess(home, [name])),
                           lambda started: f"serving '{name}' at {started[1].url} (s stops)")

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        if group == "serve" and ok and isinstance(data, tuple):
            self._servers[data[0]] = data[1]

    def on_unmount(self) -> None:
        for server in self._servers.values():
            server.stop(timeout=5)
