"""Placeholder (landing as the core piece arrives)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import WorkbenchScreen


class EvaluateScreen(WorkbenchScreen):
    MODE = "evaluate"

    def compose_body(self) -> ComposeResult:
        yield Static("Coming soon.")

    def use_model(self, name: str) -> None:
        pass

    def use_base_model(self, name: str) -> None:
        pass
