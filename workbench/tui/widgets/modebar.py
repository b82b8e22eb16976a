"""The strip at the top: the six modes with their keys, the current one highlighted."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from ..modes import MODES_SPEC


class ModeBar(Horizontal):
    """`1 Models  2 Data  3 Train  4 Chat  5 Dialogue  6 Evaluate` with the current mode marked."""

    def __init__(self, current: str, **kwargs):
        super().__init__(**kwargs)
        self.current = current

    def compose(self) -> ComposeResult:
        yield Label("Workbench", classes="brand")
        for name, (key, title, _) in MODES_SPEC.items():
            label = Label(f"{key} {title}", classes="mode" + (" -current" if name == self.current else ""),
                          id=f"mode-{name}")
            label.tooltip = f"press {key} (or F{key})"
            yield label

    def on_click(self, event) -> None:
        widget = event.widget
        if widget is not None and widget.id and widget.id.startswith("mode-"):
            self.app.run_action(f"show_mode('{widget.id[5:]}')")
