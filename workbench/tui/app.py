"""The full-screen app (placeholder first screen; the full app is issue 6)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static

from ..core.context import open_workspace


class WorkbenchApp(App):
    TITLE = "Workbench"

    def __init__(self, home: str | None = None):
        super().__init__()
        self.ctx = open_workspace(home, starter=False)

    def compose(self) -> ComposeResult:
        yield Header()
        names = ", ".join(m.name for m in self.ctx.registry.list_models()) or "none yet"
        yield Static(f"Workspace {self.ctx.ws.home}\nModels: {names}")
        yield Footer()


def run_app(home: str | None = None) -> int:
    WorkbenchApp(home).run()
    return 0
