"""The key help (`?`): every key of the current screen, the app's keys, and a line on what the screen is for.
Esc (or ?) closes it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from ..modes import MODES_SPEC

APP_KEYS = [
    ("1-6, F1-F6", "switch screens: " + ", ".join(f"{key} {title}" for key, title, _ in MODES_SPEC.values())),
    ("tab, shift+tab", "move between fields"),
    ("esc", "in a text box, ? and 1-6 type: esc leaves it (when nothing runs), F1-F6 work from anywhere"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help (esc closes it)"),
    ("ctrl+q", "quit (training jobs keep running)"),
]


def key_label(binding: Binding) -> str:
    return binding.key_display or ", ".join(k.strip() for k in binding.key.split(","))


def screen_keys(screen: Screen) -> list[tuple[str, str]]:
    """(keys, what they do) for every binding of `screen` that has a description, shown or not."""
    rows = []
    for binding in getattr(screen, "BINDINGS", []):
        if isinstance(binding, Binding) and binding.description:
            what = binding.description + (f": {binding.tooltip}" if binding.tooltip else "")
            rows.append((key_label(binding), what))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, screen: Screen):
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        title = getattr(self.for_screen, "MODE", "") or "app"
        with VerticalScroll(classes="dialog help") as box:
            box.border_title = f"Keys: {title.capitalize()}"
            about = (self.for_screen.__doc__ or "").strip().split("\n\n")[0]
            if about:
                yield Label(" ".join(about.split()), classes="hint", markup=False)
            yield Static(self._table(screen_keys(self.for_screen) + APP_KEYS), id="help-keys")
            yield Label("Esc closes", classes="hint")

    @staticmethod
    def _table(rows: list[tuple[str, str]]) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1)
        for key, what in rows:
            table.add_row(Text(key), Text(what))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
