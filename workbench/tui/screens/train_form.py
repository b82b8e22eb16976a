"""The New-job form of the Train screen: every TrainConfig field as a real value (the defaults are shown
as values, not as dim placeholders), validated as you type, with the equivalent `workbench train` command
following every field. Ctrl+r (or the button) posts StartRequested with the config; the screen launches it.

The output-model name is suggested from the base model and the dataset until the user edits it; from
then on it is theirs (cleared stays cleared) until the form is reset for the next job."""

from __future__ import annotations

import re
import shlex
from dataclasses import fields

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from ...core.errors import WorkbenchError
from ...core.training.config import KL_POSITIONS, METHODS, OBJECTIVES, PRECISIONS, SCHEDULES
from ..widgets.hinted_scroll import HintedScroll

NO_DATASET = "(none)"

# form field -> (label, kind, choices); kind: int | float | text | choice
FORM: dict[str, tuple[str, str, tuple | None]] = {
    "objective": ("Objective", "choice", OBJECTIVES),
    "method": ("Method", "choice", METHODS),
    "steps": ("Steps", "int", None),
    "batch": ("Batch", "int", None),
    "seq": ("Sequence length", "int", None),
    "lr": ("Learning rate", "float", None),
    "warmup": ("Warm-up steps", "int", None),
    "schedule": ("Schedule", "choice", SCHEDULES),
    "eval_every": ("Validate every", "int", None),
    "save_every": ("Checkpoint every (0 = end)", "int", None),
    "grad_accum": ("Gradient accumulation", "int", None),
    "precision": ("Precision", "choice", PRECISIONS),
    "seed": ("Seed", "int", None),
    "letter": ("Letter (kl-letter)", "text", None),
    "kl_positions": ("KL positions (kl-letter)", "choice", KL_POSITIONS),
    "lora_r": ("LoRA rank", "int", None),
    "lora_alpha": ("LoRA alpha", "int", None),
}
# CLI flag names where they differ from the field name with dashes.
FLAGS = {"base_model": "--model", "dataset": "--data", "keep_checkpoints": "--keep"}
ALWAYS_SHOWN = ("objective", "method")  # in the command even at their defaults: they say what the job is
LABELS = {"model": "Base model", "data": "Dataset", "out": "Output model",
          **{name.replace("_", "-"): label for name, (label, _, _) in FORM.items()}}


def default_config():
    from ...core.training import TrainConfig

    return TrainConfig(base_model="", dataset=None, out="")


def train_command(config) -> str:
    """The `workbench train` command line that launches the same job (non-default settings only)."""
    defaults = default_config()
    parts = ["workbench", "train", "--model", config.base_model or "?"]
    if config.dataset:
        parts += ["--data", config.dataset]
    parts += ["--out", config.out or "?"]
    for field in fields(config):
        name = field.name
        if name in ("base_model", "dataset", "out"):
            continue
        value, default = getattr(config, name), getattr(defaults, name)
        if value == default and name not in ALWAYS_SHOWN:
            continue
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    parts.append("--detach")
    return " ".join(shlex.quote(p) for p in parts)


def in_form_words(message: str) -> str:
    """A core message worded for the form: '--seq 512 is longer ...' -> 'Sequence length 512 is longer ...',
    '(--data NAME)' -> '(choose a Dataset)'."""
    message = re.sub(r"\(--([a-z-]+) [A-Z]+\)", lambda m: f"(choose a {LABELS.get(m[1], m[1])})", message)
    message = re.sub(r"pick another --out", "change Output model", message)
    return re.sub(r"--([a-z][a-z-]*)", lambda m: LABELS.get(m[1], m[1]), message)


class TrainForm(Vertical):
    """The form; `refresh_choices(models, datasets, taken)` fills the lists; `reset()` restores defaults."""

    class StartRequested(Message):
        def __init__(self, config):
            super().__init__()
            self.config = config

    def __init__(self, ctx, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx
        self.out_edited = False  # the user typed in Output model: never overwrite it
        self.taken: set[str] = set()  # model names in use (registered or a job's output)

    def compose(self) -> ComposeResult:
        with HintedScroll(id="train-fields"), Grid(id="train-grid"):
            yield Label("Base model")
            yield Select([], id="t-base_model", compact=True, allow_blank=True, prompt="pick a model")
            yield Label("Dataset")
            yield Select([(NO_DATASET, NO_DATASET)], id="t-dataset", compact=True, allow_blank=False)
            yield Label("Output model")
            yield Input("", id="t-out", compact=True)
            defaults = default_config()
            for name, (label, kind, choices) in FORM.items():
                yield Label(label)
                value = getattr(defaults, name)
                if kind == "choice":
                    yield Select([(c, c) for c in choices], value=value, allow_blank=False, id=f"t-{name}",
                                 compact=True)
                else:
                    yield Input(str(value), id=f"t-{name}", compact=True)
        # Below the scrolling fields, so the problem, the command and Start stay in view at 80x24.
        yield Label("", id="train-problem", classes="error", markup=False)
        yield Static("", id="train-preview", markup=False)
        yield Button("Start training (ctrl+r)", variant="primary", id="train-start", compact=True)

    # ------------------------------------------------------------ values

    def refresh_choices(self, models: list[str], datasets: list[str], taken: set[str]) -> None:
        self.taken = taken
        base = self.query_one("#t-base_model", Select)
        data = self.query_one("#t-dataset", Select)
        current = base.value
        base.set_options([(n, n) for n in models])
        if current in models:
            base.value = current
        elif models:
            base.value = models[0]
        current = data.value
        data.set_options([(NO_DATASET, NO_DATASET)] + [(n, n) for n in datasets])
        data.value = current if current in datasets else (datasets[0] if datasets else NO_DATASET)
        self.check()

    def reset(self) -> None:
        """Back to the defaults for the next job (base model and dataset stay)."""
        defaults = default_config()
        for name, (_, kind, _) in FORM.items():
            widget = self.query_one(f"#t-{name}")
            with widget.prevent(Input.Changed, Select.Changed):
                widget.value = getattr(defaults, name) if kind == "choice" else str(getattr(defaults, name))
        self.out_edited = False
        out = self.query_one("#t-out", Input)
        with out.prevent(Input.Changed):
            out.value = ""
        self.check()

    def use_base_model(self, name: str) -> None:
        self.query_one("#t-base_model", Select).value = name

    def config(self, validate: bool = True):
        """The TrainConfig the form describes (WorkbenchError worded for the form when it is not valid)."""
        from ...core.training import TrainConfig

        base = self.query_one("#t-base_model", Select).value
        dataset = self.query_one("#t-dataset", Select).value
        values: dict = {"base_model": "" if base is Select.NULL else str(base),
                        "dataset": None if dataset in (NO_DATASET, Select.NULL) else str(dataset),
                        "out": self.query_one("#t-out", Input).value.strip()}
        for name, (label, kind, _) in FORM.items():
            widget = self.query_one(f"#t-{name}")
            raw = widget.value.strip() if isinstance(widget, Input) else widget.value
            try:
                values[name] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
            except ValueError:
                what = "a whole number" if kind == "int" else "a number"
                raise WorkbenchError(f"{label}: '{raw}' is not {what}") from None
        config = TrainConfig.from_dict(values)
        if validate:
            if not config.base_model:
                raise WorkbenchError("pick a Base model")
            if not config.out:
                raise WorkbenchError("name the Output model")
            try:
                config.validate(self.ctx)
            except WorkbenchError as error:
                raise WorkbenchError(in_form_words(str(error))) from None
        return config

    def check(self):
        """Validate as you type: show the first problem and the command; returns the config or None."""
        self._suggest_out()
        problem = self.query_one("#train-problem", Label)
        preview = self.query_one("#train-preview", Static)
        try:
            preview.update(f"$ {train_command(self.config(validate=False))}")
        except WorkbenchError:
            pass  # a field that is not a number: the problem line says which; the command keeps its last form
        try:
            config = self.config()
        except WorkbenchError as error:
            problem.update(str(error))
            return None
        problem.update("")
        return config

    def _suggest_out(self) -> None:
        if self.out_edited:
            return
        base = self.query_one("#t-base_model", Select).value
        if base is Select.NULL:
            return
        dataset = self.query_one("#t-dataset", Select).value
        objective = self.query_one("#t-objective", Select).value
        if objective == "kl-letter":  # trained on no dataset: named after the letter it learns to like
            letter = self.query_one("#t-letter", Input).value.strip().lower() or "x"
            stem = f"{base}-likes-{letter}"
        else:
            stem = f"{base}-{dataset if dataset not in (NO_DATASET, Select.NULL) else objective}"
        name, n = stem, 2
        while name in self.taken:
            name, n = f"{stem}-{n}", n + 1
        out = self.query_one("#t-out", Input)
        if out.value != name:
            with out.prevent(Input.Changed):
                out.value = name
                out.cursor_position = len(name)

    # ------------------------------------------------------------ events

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.input.id == "t-out":
            self.out_edited = True  # typed by the user (our own changes are prevented)
        self.check()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.check()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "train-start":
            event.stop()
            self.start()

    def start(self) -> None:
        """Post StartRequested when the form is valid; else the problem is shown (and returned)."""
        try:
            config = self.config()
        except WorkbenchError as error:
            self.query_one("#train-problem", Label).update(str(error))
            self.app.notify(str(error), severity="error", timeout=8)
            return
        self.post_message(self.StartRequested(config))
