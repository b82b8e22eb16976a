"""Opening a workspace: folders, registry, starter model. Shared by the CLI, the TUI and jobs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .registry import Registry
from .workspace import Workspace


@dataclass
class Context:
    ws: Workspace
    registry: Registry
    created: list[str] = field(default_factory=list)  # what opening had to create, for the user


def open_workspace(home: str | os.PathLike | None = None, starter: bool = True) -> Context:
    """Open (initialising when needed) the workspace at `home`.

    Folders and the registry are cheap; the starter model needs torch, so the TUI opens with
    starter=False and builds it in a worker through `ensure_starter`."""
    ws = Workspace.resolve(home)
    fresh = not ws.db_path.exists()
    ws.create_folders()
    context = Context(ws, Registry(ws.db_path))
    if fresh:
        context.created.append(f"initialised workspace {ws.home}")
    if starter:
        ensure_starter(context)
    return context


def ensure_starter(context: Context) -> None:
    from .models import ensure_starter_model

    record = ensure_starter_model(context.ws, context.registry)
    if record is not None:
        context.created.append(f"created starter model '{record.name}' ({record.params:,} parameters)")
