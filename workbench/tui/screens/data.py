"""2 Data: the datasets (name, kind, tokens, split), add one from a file (a file picker), get a known
book (Project Gutenberg), delete. Importing cleans, splits and tokenizes: it runs in a thread worker."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from ...core.errors import WorkbenchError
from ..format import human_count
from ..widgets.tables import refill, selected_key
from .base import WorkbenchScreen
from .dialogs import ConfirmDialog, FilePickerDialog, FormField, PickDialog

PREVIEW_BYTES = 1200


class DataScreen(WorkbenchScreen):
    """Datasets to train and evaluate on: add a text file (a), get a known book (g), delete (d)."""

    MODE = "data"
    BINDINGS = [
        Binding("a", "add", "Add file", tooltip="Import a text or instruction file"),
        Binding("g", "get_book", "Get book", tooltip="Download a known Project Gutenberg book"),
        Binding("d", "delete", "Delete"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="data-body"):
            table = DataTable(id="data-table", cursor_type="row", zebra_stripes=True)
            table.border_title = "Datasets"
            yield table
            with VerticalScroll(id="data-detail", classes="panel") as detail:
                detail.border_title = "Details"
                yield Static("", id="data-detail-text")

    def on_mount(self) -> None:
        table = self.query_one("#data-table", DataTable)
        table.add_columns("Name", "Kind", "Tokens", "Train", "Val", "Test")
        self.refresh_data()
        table.focus()

    @property
    def selected(self) -> str | None:
        return selected_key(self.query_one("#data-table", DataTable))

    def refresh_data(self) -> None:
        try:
            table = self.query_one("#data-table", DataTable)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        keep = self.selected
        rows = [(record.name, [record.name, record.kind, human_count(record.tokens),
                               *(human_count((record.splits or {}).get(s)) for s in ("train", "val", "test"))])
                for record in self.ctx.registry.list_datasets()]
        refill(table, rows, keep)
        self.show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        text = self.query_one("#data-detail-text", Static)
        name = self.selected
        record = self.ctx.registry.find_dataset(name) if name else None
        if record is None:
            text.update("No datasets yet: press a to add a text file, g to get a known book.")
            return
        unit = "tokens" if record.kind == "text" else "records"
        splits = record.splits or {}
        head = Text()
        head.append(record.name, style="bold")
        head.append(f"  {record.kind}, {record.tokens:,} tokens, {record.chars:,} characters\n")
        source = record.source or "-"
        if source.startswith("/"):
            source = Path(source).name
        lines = Text()
        lines.append(f"split   {' / '.join(f'{splits.get(s, 0):,}' for s in ('train', 'val', 'test'))} "
                     f"{unit} (train / val / test, seed {record.seed})\n")
        lines.append(f"source  {source}\n")
        lines.append(f"sha256  {record.sha256[:16]}\n")
        parts: list = [head, lines]
        try:
            from ...core.data import split_path

            with split_path(self.ctx, record, "train").open("rb") as handle:
                sample = handle.read(PREVIEW_BYTES).decode("utf-8", errors="ignore")
            parts += [Text("\nTrain split begins:", style="bold"), Text(sample.rsplit("\n", 1)[0], style="dim")]
        except (OSError, WorkbenchError):
            pass
        text.update(Group(*parts))

    # ------------------------------------------------------------ actions

    def action_add(self) -> None:
        from ...core.data import KINDS
        from ...core.models import validate_name

        def check_name(value: str) -> None:
            validate_name(value, "dataset")
            if self.ctx.registry.find_dataset(value):
                raise WorkbenchError(f"a dataset named '{value}' is already registered")

        fields = [FormField("name", "Dataset name", placeholder="from the file name", check=check_name),
                  FormField("kind", "Kind", "text", choices=list(KINDS))]
        self.app.push_screen(FilePickerDialog("Add a dataset from a file", None, fields,
                                              note="plain text (.txt), or instruction pairs as JSONL"),
                             self._add)

    def _add(self, values: dict | None) -> None:
        if not values:
            return
        from ...core.data import add_dataset

        ctx = self.ctx
        self.notify(f"importing {Path(values['path']).name} as '{values['name']}'...")
        self.run_in_thread(
            "data", lambda: add_dataset(ctx, values["name"], values["path"], kind=values["kind"]),
            lambda r: f"added dataset '{r.name}' ({r.tokens:,} tokens)", changed="datasets")

    def action_get_book(self) -> None:
        from ...core.data import BOOKS

        items = [(key, f"{key}: {title}") for key, (title, _url) in BOOKS.items()]
        self.app.push_screen(PickDialog("Get a known book (downloads from Project Gutenberg)", items),
                             self._get_book)

    def _get_book(self, key: str | None) -> None:
        if not key:
            return
        if self.ctx.registry.find_dataset(key):
            self.wb.report_error(f"a dataset named '{key}' is already registered")
            return
        from ...core.data import get_book

        ctx = self.ctx
        self.notify(f"downloading '{key}'...")
        self.run_in_thread("data", lambda: get_book(ctx, key),
                           lambda r: f"added dataset '{r.name}' ({r.tokens:,} tokens)", changed="datasets")

    def action_delete(self) -> None:
        name = self.selected
        if not name:
            self.notify("no dataset selected", severity="warning")
            return

        def done(answer: dict | None) -> None:
            if answer is None:
                return
            from ...core.data import remove_dataset

            ctx = self.ctx
            self.run_in_thread("data", lambda: remove_dataset(ctx, name), f"removed dataset '{name}'",
                               changed="datasets")

        self.app.push_screen(ConfirmDialog(f"Remove dataset '{name}' and delete its files?"), done)
