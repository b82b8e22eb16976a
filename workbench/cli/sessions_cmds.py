"""`workbench sessions list | show ID`."""

from __future__ import annotations

from .common import add_json_flag, command, context, emit, table


def register(subcommands) -> None:
    group = subcommands.add_parser("sessions", help="saved chat and dialogue transcripts")
    sub = group.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    add_json_flag(command(sub, "list", cmd_list, "list saved sessions"))
    show = command(sub, "show", cmd_show, "print a saved session")
    show.add_argument("id")
    show.add_argument("--markdown", action="store_true", help="print the Markdown rendering")
    add_json_flag(show)


def cmd_list(args) -> int:
    ctx = context(args, starter=False)
    sessions = ctx.registry.list_sessions()
    emit(args, sessions, lambda ss: table(
        [[s.id, s.kind, ", ".join(s.models), s.turns, s.title] for s in ss],
        ["ID", "KIND", "MODELS", "TURNS", "TITLE"]))
    return 0


def cmd_show(args) -> int:
    from ..core.sessions import load_session, to_markdown

    ctx = context(args, starter=False)
    session = load_session(ctx, args.id)
    emit(args, session.to_dict(), lambda _: to_markdown(session))
    return 0
