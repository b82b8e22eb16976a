"""`workbench doctor [--repair]`: check the registry against the folders on disk, and mend it."""

from __future__ import annotations

from .common import add_json_flag, command, emit, info


def register(subcommands) -> None:
    parser = command(subcommands, "doctor", cmd_doctor,
                     "check the registry (integrity, folders without rows, rows without folders); "
                     "--repair mends it")
    parser.add_argument("--repair", action="store_true",
                        help="rebuild a damaged registry, re-register folders found on disk, drop rows "
                             "whose folder is gone, remove leftovers of crashed writes")
    add_json_flag(parser)


def cmd_doctor(args) -> int:
    from ..core.doctor import as_data, run_doctor

    findings = run_doctor(getattr(args, "home", None), repair=args.repair)
    data = as_data(findings)
    emit(args, data, lambda d: "\n".join(f.line() for f in findings) or "healthy: nothing to repair")
    if not data["healthy"]:
        info(f"{sum(not f.repaired for f in findings)} problem(s) left"
             + ("" if args.repair else "; run `workbench doctor --repair`"))
        return 1
    return 0
