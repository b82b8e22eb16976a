"""`workbench init`."""

from __future__ import annotations

from .common import add_json_flag, command, context, emit, info


def register(subcommands) -> None:
    parser = command(subcommands, "init", cmd_init,
                     "create the workspace (registry, folders, the starter models tiny-neo and smollm2)")
    add_json_flag(parser)


def cmd_init(args) -> int:
    from ..core.models.starter import ensure_chat_starter

    ctx = context(args)
    record, missing = ensure_chat_starter(ctx.ws, ctx.registry, progress=info)
    if record is not None:
        ctx.created.append(f"imported the chat model '{record.name}' ({record.params:,} parameters)")
        info(ctx.created[-1])
    if missing:
        info(missing)
    data = {"home": str(ctx.ws.home), "created": ctx.created,
            "models": [m.name for m in ctx.registry.list_models()]}
    if missing:
        data["missing"] = missing
    emit(args, data, lambda d: f"workspace ready at {d['home']}")
    return 0
