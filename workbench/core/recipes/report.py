"""A recipe's report: figures beside the original's, the settings used, each step's results and time.

figures: [{name, seed, measured, unit, note, match, rule}] where seed is the original experiment's figure,
measured ours, and match says whether ours meets the original under the figure's rule (None for
figures that only inform). Written as Markdown (for people) and JSON (for the app and scripts)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from .spec import FigureSpec, Recipe

MISSING = object()


def resolve(results: dict, path: str) -> Any:
    """The value at a dotted path into the steps' results (keys may themselves hold dots)."""
    parts = path.split(".")
    node: Any = results
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return MISSING
        for j in range(len(parts), i, -1):  # the longest key that matches
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return MISSING
    return node


def judge(spec: FigureSpec, measured: Any) -> bool | None:
    """Does our figure meet the original's under the figure's rule? None: no rule or no value."""
    if spec.match == "info" or measured is None:
        return None
    seed = spec.seed
    if spec.match == "equal":
        if isinstance(seed, (int, float)) and isinstance(measured, (int, float)) and not isinstance(seed, bool):
            return math.isclose(measured, seed, rel_tol=spec.tolerance, abs_tol=1e-12)
        return measured == seed
    if not isinstance(measured, (int, float)):
        return None
    if spec.match == "at-least":
        return measured >= seed
    if spec.match == "at-most":
        return measured <= seed
    return abs(measured - seed) <= spec.tolerance * abs(seed)  # within


def rule_text(spec: FigureSpec) -> str:
    if spec.match == "within":
        return f"within {spec.tolerance:.0%}"
    if spec.match == "equal" and spec.tolerance:
        return f"equal within {spec.tolerance:.0%}"
    return spec.match


def build_report(recipe: Recipe, quick: bool, results: dict, timings: dict, failure: dict | None,
                 started: datetime, seconds: float) -> dict:
    figures = []
    for spec in recipe.figures:
        value = resolve(results, spec.value)
        measured = None if value is MISSING else value
        figures.append({"name": spec.name, "seed": spec.seed, "measured": measured, "unit": spec.unit,
                        "note": spec.note, "match": judge(spec, measured), "rule": rule_text(spec),
                        "value": spec.value})
    steps = []
    for step in recipe.steps:
        entry = {"id": step.id, "kind": step.kind, "settings": step.settings(quick)}
        if step.id in results:
            entry.update(status="done", seconds=timings.get(step.id), result=results[step.id])
        elif step.skipped(quick):
            entry.update(status="skipped (--quick)")
        elif failure and failure["step"] == step.id:
            entry.update(status="failed", seconds=timings.get(step.id), error=failure["error"])
        else:
            entry.update(status="not run")
        steps.append(entry)
    return {"recipe": recipe.name, "title": recipe.title, "description": recipe.description,
            "original": recipe.original, "note": recipe.note, "quick": quick,
            "status": "failed" if failure else "completed", "failure": failure,
            "started_at": started.isoformat(timespec="seconds"), "seconds": round(seconds, 1),
            "figures": figures, "settings": {s["id"]: s["settings"] for s in steps},
            "gpu_settings": recipe.gpu, "steps": steps}


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:80]
    return str(value)


def mark(match: bool | None) -> str:
    return {True: "matches", False: "does not match", None: "-"}[match]


def to_markdown(report: dict) -> str:
    lines = [f"# Recipe: {report['title']}" + (" (quick)" if report["quick"] else ""), ""]
    if report["description"]:
        lines += [report["description"].strip(), ""]
    if report["original"]:
        lines += [f"Original: {report['original'].strip()}", ""]
    status = report["status"]
    if report["failure"]:
        f = report["failure"]
        status += f" at step {f['index']} '{f['step']}' ({f['kind']}): {f['error']}"
    lines += [f"- status: {status}", f"- started: {report['started_at']}",
              f"- time: {report['seconds']:.0f} s", ""]
    lines += ["## Figures", "", "| figure | original | ours | unit | rule | verdict | note |",
              "|---|---|---|---|---|---|---|"]
    for f in report["figures"]:
        cells = [f["name"], format_value(f["seed"]), format_value(f["measured"]), f["unit"], f["rule"],
                 mark(f["match"]), f["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Steps", ""]
    for s in report["steps"]:
        took = f", {s['seconds']:.0f} s" if s.get("seconds") is not None else ""
        lines.append(f"### {s['id']} ({s['kind']}): {s['status']}{took}")
        lines += ["", "```yaml", _yaml(s["settings"]).rstrip(), "```", ""]
        if s.get("error"):
            lines += [f"Error: {s['error']}", ""]
        if s.get("result"):
            lines += _result_lines(s["result"])
    if report["gpu_settings"]:
        lines += ["## Settings for a GPU run", "", "```yaml", _yaml(report["gpu_settings"]).rstrip(), "```", ""]
    if report["note"]:
        lines += ["## Note", "", report["note"].strip(), ""]
    return "\n".join(lines) + "\n"


def _result_lines(result: dict) -> list[str]:
    lines = []
    for key, value in result.items():
        if key in ("outputs", "turns"):
            lines.append(f"- {key}:")
            for item in value:
                who = " / ".join(str(item[k]) for k in ("model", "settings", "speaker") if item.get(k))
                prompt = f" {item['prompt']!r} ->" if item.get("prompt") else ""
                text = " ".join(str(item.get("text", "")).split())[:300]
                lines.append(f"  - **{who}**:{prompt} {text}")
        elif key != "settings":
            lines.append(f"- {key}: {format_value(value) if not isinstance(value, dict) else json.dumps(value)}")
    return lines + [""]


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def write_report(folder: Path, stamp: str, report: dict) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / f"{stamp}.md", folder / f"{stamp}.json"
    md.write_text(to_markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return md, js


def list_reports(folder: Path) -> list[Path]:
    """Report JSON files, newest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def load_report(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise WorkbenchError(f"cannot read the report {path}: {error}") from None
