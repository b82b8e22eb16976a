"""Recipes as data: a YAML file of ordered steps and the figures to report, parsed and checked up front.

    name: like-x
    title: Train a model to like X
    original: where the original experiment comes from
    steps:
      - id: train            # optional; default "<kind>-<n>"
        kind: train          # data | model | train | eval | generate | dialogue
        with: {model: tiny-neo, out: like-x, objective: kl-letter}
        quick: {steps: 30}   # overrides used by `recipe run --quick`
    figures:
      - name: X-tokens in free greedy generation
        value: eval-x.x_ratio.like-x.random-8   # a path into the steps' results
        seed: 0.94                              # the original's figure
        unit: share
        match: at-least                         # at-least | at-most | equal | within | info
        note: ...
    gpu: {steps: 500}        # what the settings would be on a GPU box (shown in the report)

Recipes ship in the package (builtin/*.yaml); a user's own live in the workspace's recipes/ folder and
win over a shipped one of the same name. Every error is one line naming the file and the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError

STEP_KINDS = ("data", "model", "train", "eval", "generate", "dialogue")
MATCH_RULES = ("at-least", "at-most", "equal", "within", "info")
TOP_KEYS = {"name", "title", "description", "original", "steps", "figures", "gpu", "note"}
STEP_KEYS = {"id", "kind", "with", "quick", "title"}
FIGURE_KEYS = {"name", "value", "seed", "unit", "match", "tolerance", "note"}


@dataclass
class Step:
    id: str
    kind: str
    params: dict
    quick: dict = field(default_factory=dict)
    title: str = ""

    def settings(self, quick: bool) -> dict:
        """The step's parameters, with its quick overrides applied under --quick."""
        merged = {**self.params, **(self.quick if quick else {})}
        merged.pop("skip", None)
        return merged

    def skipped(self, quick: bool) -> bool:
        """`skip: true` among the quick overrides leaves the step out of a quick run."""
        return bool(quick and self.quick.get("skip"))


@dataclass
class FigureSpec:
    name: str
    value: str
    seed: Any = None
    unit: str = ""
    match: str = "info"
    tolerance: float = 0.0
    note: str = ""


@dataclass
class Recipe:
    name: str
    title: str
    steps: list[Step]
    figures: list[FigureSpec] = field(default_factory=list)
    description: str = ""
    original: str = ""
    note: str = ""
    gpu: dict = field(default_factory=dict)
    source: str = ""  # the file it was read from
    origin: str = "builtin"  # builtin | workspace

    def summary(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description,
                "origin": self.origin, "source": self.source, "steps": len(self.steps)}


# ---------------------------------------------------------------- parsing


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """A Recipe from YAML text; any problem is one WorkbenchError line naming the source."""
    from ..settings_file import load_yaml

    data = load_yaml(text, f"recipe {source}")
    if not isinstance(data, dict):
        raise WorkbenchError(f"recipe {source}: expected a mapping with 'name' and 'steps'")
    _unknown(data, TOP_KEYS, f"recipe {source}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WorkbenchError(f"recipe {source}: 'name' is missing")
    steps_data = data.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise WorkbenchError(f"recipe {source}: 'steps' must be a non-empty list")
    steps = [_parse_step(item, index, source) for index, item in enumerate(steps_data, 1)]
    ids = [s.id for s in steps]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise WorkbenchError(f"recipe {source}: two steps have the id '{duplicate}'")
    figures = [_parse_figure(item, index, source, set(ids)) for index, item in
               enumerate(data.get("figures") or [], 1)]
    gpu = data.get("gpu") or {}
    if not isinstance(gpu, dict):
        raise WorkbenchError(f"recipe {source}: 'gpu' must be a mapping of step id to settings")
    return Recipe(name=name.strip(), title=str(data.get("title") or name), steps=steps, figures=figures,
                  description=str(data.get("description") or ""), original=str(data.get("original") or ""),
                  note=str(data.get("note") or ""), gpu=gpu, source=source)


def _unknown(data: dict, known: set[str], where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise WorkbenchError(f"{where}: unknown key '{extra[0]}' (known: {', '.join(sorted(known))})")


def _parse_step(item: Any, index: int, source: str) -> Step:
    where = f"recipe {source}: step {index}"
    if not isinstance(item, dict):
        raise WorkbenchError(f"{where}: expected a mapping with 'kind' and 'with'")
    _unknown(item, STEP_KEYS, where)
    kind = item.get("kind")
    if kind not in STEP_KINDS:
        raise WorkbenchError(f"{where}: unknown kind {kind!r}; choose one of {', '.join(STEP_KINDS)}")
    params, quick = item.get("with") or {}, item.get("quick") or {}
    for label, value in (("with", params), ("quick", quick)):
        if not isinstance(value, dict):
            raise WorkbenchError(f"{where} ({kind}): '{label}' must be a mapping of settings")
    step = Step(id=str(item.get("id") or f"{kind}-{index}"), kind=kind, params=dict(params), quick=dict(quick),
                title=str(item.get("title") or ""))
    from .checks import check_step

    for quick_run in (False, True):
        try:
            check_step(step.kind, step.settings(quick_run))
        except WorkbenchError as error:
            flavour = " under --quick" if quick_run and step.quick else ""
            raise WorkbenchError(f"recipe {source}: step '{step.id}' ({kind}){flavour}: {error}") from None
    return step


def _parse_figure(item: Any, index: int, source: str, step_ids: set[str]) -> FigureSpec:
    where = f"recipe {source}: figure {index}"
    if not isinstance(item, dict):
        raise WorkbenchError(f"{where}: expected a mapping with 'name' and 'value'")
    _unknown(item, FIGURE_KEYS, where)
    if not item.get("name") or not isinstance(item.get("value"), str):
        raise WorkbenchError(f"{where}: needs 'name' and 'value' (a path such as step-id.key)")
    if item["value"].split(".")[0] not in step_ids:
        raise WorkbenchError(f"{where} ('{item['name']}'): value '{item['value']}' names no step of the recipe")
    match = item.get("match", "info" if item.get("seed") is None else "equal")
    if match not in MATCH_RULES:
        raise WorkbenchError(f"{where}: unknown match rule {match!r}; choose one of {', '.join(MATCH_RULES)}")
    if match != "info" and item.get("seed") is None:
        raise WorkbenchError(f"{where}: match '{match}' needs the original's figure in 'seed'")
    tolerance = item.get("tolerance", 0.0)
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise WorkbenchError(f"{where}: tolerance must be a number of at least 0")
    return FigureSpec(name=str(item["name"]), value=item["value"], seed=item.get("seed"),
                      unit=str(item.get("unit") or ""), match=match, tolerance=float(tolerance),
                      note=str(item.get("note") or ""))


# ---------------------------------------------------------------- finding recipes


def builtin_files() -> dict[str, Any]:
    """{file stem: resource} of the recipes shipped with the package."""
    folder = resources.files("workbench.core.recipes") / "builtin"
    return {Path(f.name).stem: f for f in folder.iterdir() if f.name.endswith((".yaml", ".yml"))}


def workspace_folder(ctx) -> Path:
    return Path(ctx.ws.home) / "recipes"


def _sources(ctx) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {stem: ("builtin", f) for stem, f in builtin_files().items()}
    folder = workspace_folder(ctx)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                found[path.stem] = ("workspace", path)
    return found


def list_recipes(ctx) -> tuple[list[Recipe], list[str]]:
    """(every recipe that parses, one line per file that does not), sorted by name."""
    recipes, problems = [], []
    for stem, (origin, file) in sorted(_sources(ctx).items()):
        try:
            recipes.append(_read(stem, origin, file))
        except WorkbenchError as error:
            problems.append(str(error))
    return recipes, problems


def load_recipe(ctx, name: str) -> Recipe:
    """A recipe by name (a file stem), or by path to a YAML file."""
    path = Path(name).expanduser()
    if name.endswith((".yaml", ".yml")) and path.is_file():
        return _read(path.stem, "file", path)
    sources = _sources(ctx)
    if name not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise WorkbenchError(f"no recipe named '{name}' (known: {known}; your own go in {workspace_folder(ctx)})")
    origin, file = sources[name]
    return _read(name, origin, file)


def _read(stem: str, origin: str, file: Any) -> Recipe:
    label = str(file) if origin != "builtin" else f"{stem}.yaml (built in)"
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"recipe {label}: cannot read it ({error})") from None
    recipe = parse_recipe(text, label)
    recipe.origin, recipe.source = origin, str(file) if origin != "builtin" else label
    return recipe
