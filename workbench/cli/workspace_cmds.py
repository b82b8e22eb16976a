"""`workbench init`."""

from __future__ import annotations

from .common import add_json_flag, command, context, emit


def register(subcommands) -> None:
    parser = command(subcommands, "init", cmd_init, "create the workspace (registry, folders, starter model)")
    add_json_flag(parser)


def cmd_init(args) -> int:
    ctx = context(args)
    data = {"home": str(ctx.ws.home), "created": ctx.created,
            "models": [m.name for m in ctx.registry.list_models()]}
    emit(args, data, lambda d: f"workspace ready at {d['home']}")
    return 0
