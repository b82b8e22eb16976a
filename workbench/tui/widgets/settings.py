"""Generation settings panel: max new tokens, sampling, temperature, top-k, top-p, repetition penalty,
seed, validated as you type (the same checks as GenerationSettings.validate)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Checkbox, Input, Label

from ...core.errors import WorkbenchError
from .toggles import Tick

# field -> (label, kind); kind: int | float | seed
FIELDS = {
    "max_new_tokens": ("Max new tokens", "int"),
    "temperature": ("Temperature", "float"),
    "top_k": ("Top-k (0 = off)", "int"),
    "top_p": ("Top-p", "float"),
    "repetition_penalty": ("Repetition penalty", "float"),
    "seed": ("Seed (blank = random)", "seed"),
}


class SettingsPanel(VerticalScroll):
    """Holds a GenerationSettings; `settings()` returns it or raises WorkbenchError with one line."""

    def __init__(self, defaults: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        from ...core.generation import GenerationSettings

        self._defaults = GenerationSettings.from_dict(defaults or {})
        self.border_title = "Settings"

    def compose(self) -> ComposeResult:
        values = self._defaults.to_dict()
        yield Tick("Sampling", values["do_sample"], on_text="on", off_text="off", id="set-do_sample",
                   compact=True)
        for name, (label, _) in FIELDS.items():
            yield Label(label)
            value = values[name]
            kind = FIELDS[name][1]  # typed fields refuse stray text (a message typed into Seed by mistake)
            yield Input("" if value is None else str(value), id=f"set-{name}", compact=True,
                        type="number" if kind == "float" else "integer")
        yield Label("", id="settings-error", classes="error", markup=False)

    def settings(self):
        from ...core.generation import GenerationSettings

        data: dict = {"do_sample": self.query_one("#set-do_sample", Checkbox).value}
        for name, (label, kind) in FIELDS.items():
            raw = self.query_one(f"#set-{name}", Input).value.strip()
            if kind == "seed" and not raw:
                data[name] = None
                continue
            try:
                data[name] = int(raw) if kind in ("int", "seed") else float(raw)
            except ValueError:
                raise WorkbenchError(f"{label.split(' (')[0].lower()}: '{raw}' is not a "
                                     f"{'whole number' if kind != 'float' else 'number'}") from None
        return GenerationSettings.from_dict(data).validate()

    def load(self, values: dict) -> None:
        from ...core.generation import GenerationSettings

        settings = GenerationSettings.from_dict(values).to_dict()
        self.query_one("#set-do_sample", Checkbox).value = bool(settings["do_sample"])
        for name in FIELDS:
            value = settings[name]
            self.query_one(f"#set-{name}", Input).value = "" if value is None else str(value)

    def check(self) -> bool:
        error = self.query_one("#settings-error", Label)
        try:
            self.settings()
        except WorkbenchError as problem:
            error.update(str(problem))
            self.add_class("-invalid")
            return False
        error.update("")
        self.remove_class("-invalid")
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.check()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.check()


def toggle_settings(screen, text_field: str) -> None:
    """Show or hide the screen's settings panel; hiding it with the focus inside moves the focus to
    `text_field` (a selector), so typing never goes into a field that is no longer there."""
    panel = screen.query_one(SettingsPanel)
    focused = screen.focused
    hiding_focus = panel.display and focused is not None and panel in focused.ancestors
    panel.display = not panel.display
    if hiding_focus:
        screen.query_one(text_field).focus()
