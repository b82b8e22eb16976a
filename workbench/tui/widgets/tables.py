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

    quiet: move the cursor without posting RowHighlighted (the caller already shows that row)."""
    table.clear()
    keys = []
    for key, cells in rows:
        table.add_row(*cells, key=key)
        keys.append(key)
    if keep in keys:
        if quiet:
            with table.prevent(DataTable.RowHighlighted):
                table.move_cursor(row=keys.index(keep))
        else:
            table.move_cursor(row=keys.index(keep))
