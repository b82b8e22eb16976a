"""`workbench recipe list | show NAME | run NAME [--quick]`: the original experiments as one command each."""

from __future__ import annotations

import sys

from .common import add_json_flag, command, context, emit, info, table


def register(subcommands) -> None:
    parser = subcommands.add_parser("recipe", help="run the original experiments as recipes, with a report",
                                    description="Recipes: YAML step lists shipped with workbench, plus your own "
                                                "in the workspace's recipes/ folder.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = command(verbs, "list", cmd_list, "list the recipes")
    add_json_flag(p)
    p = command(verbs, "show", cmd_show, "show a recipe's steps and figures")
    p.add_argument("name", help="a recipe name (or a path to a recipe file)")
    add_json_flag(p)
    p = command(verbs, "run", cmd_run, "run a recipe and write its report under reports/")
    p.add_argument("name", help="a recipe name (or a path to a recipe file)")
    p.add_argument("--quick", action="store_true", help="the recipe's small settings (minutes on a CPU)")
    add_json_flag(p)


def cmd_list(args) -> int:
    from ..core.recipes.spec import list_recipes

    ctx = context(args, starter=False)
    recipes, problems = list_recipes(ctx)
    for line in problems:
        info(f"warning: {line}")
    data = [r.summary() for r in recipes]
    emit(args, data, lambda rows: table([[r["name"], r["origin"], r["steps"], r["title"]] for r in rows],
                                        ["name", "from", "steps", "title"]))
    return 0


def cmd_show(args) -> int:
    from dataclasses import asdict

    from ..core.recipes.spec import load_recipe

    recipe = load_recipe(context(args, starter=False), args.name)
    data = asdict(recipe)

    def render(d: dict) -> str:
        lines = [f"{d['name']}: {d['title']}  ({d['origin']}: {d['source']})"]
        if d["description"]:
            lines.append(d["description"].strip())
        lines.append("steps:")
        for i, s in enumerate(d["steps"], 1):
            quick = f"  --quick: {s['quick']}" if s["quick"] else ""
            lines.append(f"  {i}. {s['id']} ({s['kind']}): {s['params']}{quick}")
        if d["figures"]:
            lines.append("figures:")
            for f in d["figures"]:
                seed = f"original {f['seed']}" if f["seed"] is not None else "no original figure"
                lines.append(f"  - {f['name']} ({seed}, {f['match']}) <- {f['value']}")
        return "\n".join(lines)

    emit(args, data, render)
    return 0


class _Progress:
    """Step lines on stderr, and a progress bar while a step reports how far it is."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.kind == "progress" and event.of:
            if self.bar is None or self.bar.total != event.of:
                self._close()
                self.bar = tqdm(total=event.of, file=sys.stderr, desc=f"  {event.step}", dynamic_ncols=True,
                                leave=False)
            self.bar.n = min(event.done or 0, event.of)
            if event.message:
                self.bar.set_postfix_str(event.message[:40], refresh=False)
            self.bar.refresh()
            return
        self._close()
        if event.kind == "start":
            info(f"[{event.index}/{event.total}] {event.step} ({event.step_kind})")
        elif event.kind == "note":
            info(f"  {event.message}")
        elif event.kind == "done":
            info(f"  {event.message}")

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_run(args) -> int:
    from ..core.errors import WorkbenchError
    from ..core.recipes.report import format_value, mark
    from ..core.recipes.runner import run_recipe
    from ..core.recipes.spec import load_recipe

    from ..core.context import ensure_starter

    ctx = context(args, starter=False)
    recipe = load_recipe(ctx, args.name)  # a wrong name fails before torch loads
    before = len(ctx.created)
    ensure_starter(ctx)
    for line in ctx.created[before:]:
        info(line)
    progress = _Progress()
    report = run_recipe(ctx, recipe, quick=args.quick, on_event=progress)
    progress._close()

    def render(r: dict) -> str:
        rows = [[f["name"], format_value(f["seed"]), format_value(f["measured"]), f["unit"], mark(f["match"])]
                for f in r["figures"]]
        lines = [f"recipe {r['recipe']}{' (quick)' if r['quick'] else ''}: {r['status']} in {r['seconds']:.0f} s"]
        if rows:
            lines.append(table(rows, ["figure", "original", "ours", "unit", "verdict"]))
        lines.append(f"report: {r['report_path']}")
        return "\n".join(lines)

    emit(args, report, render)
    if report["failure"]:
        f = report["failure"]
        raise WorkbenchError(f"recipe {recipe.name} stopped at step {f['index']} '{f['step']}': {f['error']} "
                             f"(steps before it are kept; report: {report['report_path']})")
    return 0

