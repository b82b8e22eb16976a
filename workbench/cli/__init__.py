"""`workbench`: headless commands over the core; with no command it opens the full-screen app.

Each command group lives in its own module with a `register(subcommands)` function. Modules here must
stay cheap to import: torch and transformers load inside the handlers that need them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..core.errors import WorkbenchError

# Order = order in `workbench --help`.
COMMAND_MODULES = [
    "workspace_cmds",
    "models_cmds",
    "data_cmds",
    "train_cmds",
    "jobs_cmds",
    "generate_cmds",
    "sessions_cmds",
    "eval_cmds",
    "serve_cmds",
    "recipe_cmds",
    "export_cmds",
    "doctor_cmds",
]


class UsageError(Exception):
    """Bad usage (exit 2), raised instead of argparse's own exit so --json can report it too."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="workbench",
        description="Fine-tune, chat with and evaluate causal language models. "
        "With no command, opens the full-screen app.",
    )
    parser.add_argument("--home", help="workspace folder (default: $WORKBENCH_HOME, else the current folder)")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(str(error), file=sys.stderr)
        if "--json" in argv:
            import json

            print(json.dumps({"error": str(error)}, ensure_ascii=False))
        return 2
    if args.command is None:
        from ..tui.app import run_app

        return run_app(args.home)
    try:
        return args.handler(args) or 0
    except WorkbenchError as error:
        return user_error(args, str(error))
    except OSError as error:  # the disk or the file system, not a bug: one line, whatever the layer
        if isinstance(error, BrokenPipeError):
            return broken_pipe()
        return user_error(args, os_error_line(args, error))
    except Exception as error:  # torch / safetensors writers on a full disk; anything else is a bug
        from ..core.faults import disk_fault

        fault = disk_fault(error, workspace_home(args))
        if fault is None:
            raise
        return user_error(args, str(fault))
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


def broken_pipe() -> int:
    # The reader went away (`workbench ... | head`): stop quietly, as Unix tools do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def user_error(args: argparse.Namespace, message: str) -> int:
    """One line on stderr, exit 1; with --json also {"error": ...} on stdout for scripts."""
    print(f"workbench: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        import json

        try:
            print(json.dumps({"error": message}, ensure_ascii=False))
        except BrokenPipeError:
            pass
    return 1


def workspace_home(args: argparse.Namespace):
    from ..core.workspace import Workspace

    return Workspace.resolve(getattr(args, "home", None)).home


def os_error_line(args: argparse.Namespace, error: OSError) -> str:
    from ..core.faults import disk_fault

    fault = disk_fault(error, workspace_home(args))
    if fault is not None:
        return str(fault)
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or error}{where}"


if __name__ == "__main__":
    sys.exit(main())
