"""Modal dialogs: confirm, a small form, a file picker, a list to pick from. Keyboard first."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DirectoryTree, Input, Label, OptionList, Select
from textual.widgets.option_list import Option

from ...core.errors import WorkbenchError



def compose_field(field: FormField) -> ComposeResult:
    """One labelled form row: a Select for fields with choices, else an Input (id f-<name>)."""
    with Horizontal(classes="field"):
        yield Label(field.label, classes="field-label")
        if field.choices:
            yield Select([(c, c) for c in field.choices], value=field.value or field.choices[0],
                         allow_blank=False, id=f"f-{field.name}", compact=True)
        else:
            yield Input(str(field.value), placeholder=field.placeholder, id=f"f-{field.name}", compact=True)


def compose_buttons(submit_label: str) -> ComposeResult:
    """The error line and the submit / cancel buttons every form dialog ends with."""
    yield Label("", id="form-error", classes="error", markup=False)
    with Horizontal(classes="buttons"):
        yield Button(submit_label, variant="primary", id="ok", compact=True)
        yield Button("Cancel (esc)", id="cancel", compact=True)

class ConfirmDialog(ModalScreen[dict | None]):
    """A yes/no question; optional checkbox (e.g. "also delete its files"). Returns {"checked": bool}."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str, checkbox: str | None = None, danger: bool = True):
        super().__init__()
        self.question = question
        self.checkbox = checkbox
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question", markup=False)
            if self.checkbox:
                yield Checkbox(self.checkbox, id="confirm-check", compact=True)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error" if self.danger else "primary", id="yes", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_yes() if event.button.id == "yes" else self.action_no()

    def action_yes(self) -> None:
        checked = bool(self.checkbox) and self.query_one("#confirm-check", Checkbox).value
        self.dismiss({"checked": checked})

    def action_no(self) -> None:
        self.dismiss(None)


class FormField:
    """One field of a FormDialog: an Input (text) or a Select (choices) or a Checkbox (flag)."""

    def __init__(self, name: str, label: str, value: str | bool = "", choices: list[str] | None = None,
                 placeholder: str = "", flag: bool = False, check: Callable[[str], None] | None = None):
        self.name, self.label, self.value = name, label, value
        self.choices, self.placeholder, self.flag, self.check = choices, placeholder, flag, check


class _FormScreen(ModalScreen[dict | None]):
    """A modal form: Enter or OK submits when `problem()` finds nothing, dismissing with `values()`;
    Esc or Cancel dismisses with None. Subclasses compose the fields and define those two methods."""

    def problem(self) -> str | None:
        raise NotImplementedError

    def values(self) -> dict:
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_submit() if event.button.id == "ok" else self.action_cancel()

    def action_submit(self) -> None:
        problem = self.problem()
        if problem:
            self.query_one("#form-error", Label).update(problem)
            return
        self.dismiss(self.values())

    def action_cancel(self) -> None:
        self.dismiss(None)


class FormDialog(_FormScreen):
    """A titled form; Enter submits, Esc cancels. `validate(values)` raises WorkbenchError to refuse."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "OK", show=False)]

    def __init__(self, title: str, fields: list[FormField],
                 validate: Callable[[dict], None] | None = None, submit_label: str = "OK"):
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.validate = validate
        self.submit_label = submit_label

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog form") as box:
            box.border_title = self.title_text
            for field in self.fields:
                if field.flag:
                    yield Checkbox(field.label, value=bool(field.value), id=f"f-{field.name}", compact=True)
                    continue
                yield from compose_field(field)
            yield from compose_buttons(self.submit_label)

    def values(self) -> dict:
        values = {}
        for field in self.fields:
            widget = self.query_one(f"#f-{field.name}")
            values[field.name] = widget.value.strip() if isinstance(widget, Input) else widget.value
        return values

    def problem(self) -> str | None:
        values = self.values()
        try:
            for field in self.fields:
                if field.check:
                    field.check(values[field.name])
            if self.validate:
                self.validate(values)
        except WorkbenchError as error:
            return str(error)
        return None

    def on_mount(self) -> None:
        self._live = False
        self.call_after_refresh(setattr, self, "_live", True)  # check as the user types, not on open
        first = self.query("Input, Select, Checkbox")
        if first:
            first.first().focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if getattr(self, "_live", False):
            self.query_one("#form-error", Label).update(self.problem() or "")



class PickDialog(ModalScreen[str | None]):
    """Pick one item from a list (sessions, books...). Returns its id."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, items: list[tuple[str, str]], empty: str = "nothing to pick"):
        super().__init__()
        self.title_text = title
        self.items = items
        self.empty = empty

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog pick") as box:
            box.border_title = self.title_text
            if self.items:
                yield OptionList(*[Option(Content(label), id=item_id) for item_id, label in self.items], id="pick")
            else:
                yield Label(self.empty)
            yield Label("Enter picks, Esc cancels", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilePickerDialog(_FormScreen):
    """Pick a file: type a path (checked as you type) or browse a directory tree (Enter on a file).

    Extra fields (name, kind) travel with it. Returns {"path": ..., **fields} or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+t", "focus_tree", "Browse")]

    def __init__(self, title: str, start: Path, fields: list[FormField] | None = None):
        super().__init__()
        self.title_text = title
        self.start = start
        self.fields = fields or []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog picker") as box:
            box.border_title = self.title_text
            yield Label("File (type a path, or ctrl+t to browse)")
            yield Input(placeholder=str(self.start) + "/...", id="path", compact=True)
            yield DirectoryTree(self.start, id="tree")
            for field in self.fields:
                yield from compose_field(field)
            yield from compose_buttons("Add")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def problem(self) -> str | None:
        raw = self.query_one("#path", Input).value.strip()
        if not raw:
            return "choose a file"
        path = Path(raw).expanduser()
        if not path.exists():
            return f"no such file: {path}"
        if not path.is_file():
            return f"{path} is a folder, not a file"
        for field in self.fields:
            if field.check:
                try:
                    field.check(self._value(field))
                except WorkbenchError as error:
                    return str(error)
        return None

    def _value(self, field: FormField):
        widget = self.query_one(f"#f-{field.name}")
        return widget.value.strip() if isinstance(widget, Input) else widget.value

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#form-error", Label).update(self.problem() or "")

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        path_input = self.query_one("#path", Input)
        path_input.value = str(event.path)
        name_field = next((f for f in self.fields if f.name == "name"), None)
        if name_field:
            name_input = self.query_one(f"#f-{name_field.name}", Input)
            if not name_input.value:
                name_input.value = Path(event.path).stem
        path_input.focus()

    def action_focus_tree(self) -> None:
        self.query_one("#tree", DirectoryTree).focus()

    def values(self) -> dict:
        result = {"path": str(Path(self.query_one("#path", Input).value.strip()).expanduser())}
        result.update({f.name: self._value(f) for f in self.fields})
        return result
