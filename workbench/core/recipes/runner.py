"""Running a recipe: its steps in order, progress as events, a report at the end (also after a failure).

A failed step stops the run: the error becomes one line in the report, the steps done before it keep
everything they registered (datasets, models, jobs, evaluations, sessions), and running the recipe again
reuses a model already trained with the same settings, so it picks up where it stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..errors import WorkbenchError
from .spec import Recipe


@dataclass
class RecipeEvent:
    kind: str  # start | note | progress | done | failed | finished
    index: int  # 1-based step number (0 for the run itself)
    total: int  # steps in the recipe
    step: str = ""
    step_kind: str = ""
    message: str = ""
    done: int | None = None
    of: int | None = None


class _StepEnv:
    """What a step sees: where to put files, a shared model cache, and the event callback."""

    def __init__(self, emit: Callable[[RecipeEvent], None], base: RecipeEvent, files: Path, cache,
                 should_stop: Callable[[], bool] | None):
        self._emit, self._base, self.files, self.cache = emit, base, files, cache
        self._should_stop = should_stop

    def _event(self, kind: str, message: str, done=None, of=None) -> None:
        b = self._base
        self._emit(RecipeEvent(kind, b.index, b.total, b.step, b.step_kind, message, done, of))

    def note(self, message: str) -> None:
        self._event("note", message)

    def progress(self, done: int, total: int, message: str = "") -> None:
        self._event("progress", message, done, total)

    def should_stop(self) -> bool:
        return bool(self._should_stop and self._should_stop())


def reports_dir(ctx) -> Path:
    return Path(ctx.ws.home) / "reports"


def run_recipe(ctx, recipe: Recipe, quick: bool = False, on_event: Callable[[RecipeEvent], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> dict:
    """Run every step; return the report (also written as reports/<name>-<time>.md and .json)."""
    from ..models import ModelCache
    from .report import build_report, write_report

    emit = on_event or (lambda event: None)
    started = datetime.now()
    stamp = f"{recipe.name}-{started:%Y%m%d-%H%M%S}" + ("-quick" if quick else "")
    files = reports_dir(ctx) / f"{stamp}.files"
    files.mkdir(parents=True, exist_ok=True)
    cache = ModelCache(max_models=3)
    total = len(recipe.steps)
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    failure: dict | None = None
    began = time.monotonic()
    for index, step in enumerate(recipe.steps, 1):
        base = RecipeEvent("start", index, total, step.id, step.kind, step.title or step.kind)
        emit(base)
        env = _StepEnv(emit, base, files, cache, should_stop)
        step_began = time.monotonic()
        if step.skipped(quick):
            emit(RecipeEvent("done", index, total, step.id, step.kind, "skipped under --quick"))
            continue
        try:
            if should_stop and should_stop():
                raise WorkbenchError("stopped before this step")
            from .steps import run_step

            results[step.id] = run_step(ctx, step.kind, step.settings(quick), env)
        except WorkbenchError as error:
            failure = {"step": step.id, "kind": step.kind, "index": index, "error": str(error)}
        except Exception as error:  # noqa: BLE001 - a library failure still ends in one line and a report
            failure = {"step": step.id, "kind": step.kind, "index": index,
                       "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        timings[step.id] = round(time.monotonic() - step_began, 1)
        if failure:
            emit(RecipeEvent("failed", index, total, step.id, step.kind, failure["error"]))
            break
        emit(RecipeEvent("done", index, total, step.id, step.kind, f"done in {timings[step.id]:.1f} s"))
    cache.clear()
    report = build_report(recipe, quick, results, timings, failure, started, time.monotonic() - began)
    paths = write_report(reports_dir(ctx), stamp, report)
    report["report_path"], report["json_path"] = str(paths[0]), str(paths[1])
    if not any(files.iterdir()):
        files.rmdir()
    emit(RecipeEvent("finished", 0, total, message=report["report_path"]))
    return report
