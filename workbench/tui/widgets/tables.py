"""DataTable helpers the registry tables share: the selected row's key, and refills that keep the cursor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.widgets import DataTable


def selected_key(table: DataTable) -> str | None:
    """The key of the row under the cursor (rows are keyed by the record's name or id)."""
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return row_key.value


def refill(table: DataTable, rows: Iterable[tuple[str, Sequence]], keep: str | None,
           quiet: bool = False) -> None:
    """Replace every row, then put the cursor back on the row keyed `keep` when it is still there.

    quiet: post no RowHighlighted at all (the caller already shows that row). Clearing moves the cursor
    to the first row too, and a highlight posted for that would, handled later, select the first row's
    record: the Jobs table jumped back to the newest job a moment after the user moved down."""
    if quiet:
        with table.prevent(DataTable.RowHighlighted):
            _refill(table, rows, keep)
    else:
        _refill(table, rows, keep)


def _refill(table: DataTable, rows: Iterable[tuple[str, Sequence]], keep: str | None) -> None:
    table.clear()
    keys = []
    for key, cells in rows:
        table.add_row(*cells, key=key)
        keys.append(key)
    if keep in keys:
        table.move_cursor(row=keys.index(keep))
