"""App-level background work (thread workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import WorkbenchApp


def starter_worker(app: "WorkbenchApp") -> None:
    """Create the starter model when the workspace has no model (needs torch, so never on the loop)."""
    from ..core.context import ensure_starter

    try:
        before = len(app.ctx.created)
        ensure_starter(app.ctx)
        created = app.ctx.created[before:]
    except Exception as error:  # noqa: BLE001 - reported, never raised into the app
        app.call_from_thread(app.report_error, error)
        return
    if created:
        app.call_from_thread(app.notify, created[-1])
        app.call_from_thread(app.registry_changed.publish, "models")
