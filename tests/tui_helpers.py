"""Helpers shared by the app's pilot tests (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import io

from textual.widgets import DataTable

SIZE = (100, 30)
TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
        "nothing to do: once or twice she had peeped into the book her sister was reading.\n\n") * 30


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def visible_text(widget) -> str:
    """The text a Static/Label shows (Rich renderables rendered wide, without wrapping)."""
    from rich.console import Console
    from textual.content import Content

    content = widget.render()
    if isinstance(content, Content):
        return content.plain
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(getattr(content, "_renderable", content))
    return console.export_text()


def table_column(table: DataTable, index: int = 0) -> list[str]:
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


def select_row(table: DataTable, name: str) -> None:
    table.move_cursor(row=table_column(table).index(name))


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
