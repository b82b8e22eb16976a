"""Modal dialogs: confirm, a small form, a file picker, a list to pick from. Keyboard first."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select
from textual.widgets.option_list import Option

from ...core.errors import WorkbenchError
from ..widgets.hinted_scroll import HintedScroll
from ..widgets.toggles import Tick



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
                yield Tick(self.checkbox, id="confirm-check", compact=True)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error" if self.danger else "primary", id="yes", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_yes() if event.button.id == "yes" else self.action_no()

    def action_yes(self) -> None:
        checked = bool(self.checkbox) and self.query_one("#confirm-check", Tick).value
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
        with HintedScroll(classes="dialog form") as box:
            box.border_title = self.title_text
            for field in self.fields:
                if field.flag:
                    yield Tick(field.label, bool(field.value), id=f"f-{field.name}", compact=True)
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
    """Pick a file: type a path (the list below follows it, Tab completes) or walk the folders in the list
    (Enter opens a folder, `..` goes up, Enter on a file picks it). Starts in the last folder used, else
    the home folder. Extra fields (name, kind) travel with it; a typed or picked file fills an untouched
    `name` field from the file name. Returns {"path": ..., **fields} or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("tab", "complete", "Complete", priority=True)]
    MAX_ENTRIES = 200

    def __init__(self, title: str, start: Path | None = None, fields: list[FormField] | None = None,
                 note: str = "", suffixes: tuple[str, ...] = ()):
        super().__init__()
        self.title_text = title
        self.start = start
        self.fields = fields or []
        self.note = note
        self.suffixes = suffixes  # files shown in the list (all when empty)
        self.folder = Path.home()
        self._name_touched = False

    def compose(self) -> ComposeResult:
        with HintedScroll(classes="dialog picker") as box:
            box.border_title = self.title_text
            if self.note:
                yield Label(self.note, classes="hint", markup=False)
            yield Label("File (type a path: Tab completes; or pick below)")
            yield Input(id="path", compact=True, select_on_focus=False)  # typing appends to the folder
            yield Label("", id="folder", classes="hint", markup=False)
            yield OptionList(id="entries")
            for field in self.fields:
                yield from compose_field(field)
            yield from compose_buttons("OK" if not self.fields else "Add")

    def on_mount(self) -> None:
        start = self.start or getattr(self.app, "last_folder", None) or Path.home()
        self.show_folder(Path(start))
        path_input = self.query_one("#path", Input)
        with path_input.prevent(Input.Changed):
            path_input.value = str(self.folder) + "/"
        path_input.cursor_position = len(path_input.value)
        path_input.focus()

    # ------------------------------------------------------------ the list

    def _wanted(self, path: Path) -> bool:
        return not self.suffixes or path.suffix.lower() in self.suffixes

    def show_folder(self, folder: Path, prefix: str = "") -> None:
        """List `folder`: `..`, then its subfolders and files whose names start with `prefix`."""
        try:
            entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError:
            return
        self.folder = folder
        entries = [p for p in entries if not p.name.startswith(".") and p.name.startswith(prefix)
                   and (p.is_dir() or self._wanted(p))]
        options = [Option("..", id="..")] if folder.parent != folder else []
        options += [Option(Content(p.name + ("/" if p.is_dir() else "")), id=str(p))
                    for p in entries[:self.MAX_ENTRIES]]
        listing = self.query_one("#entries", OptionList)
        listing.clear_options()
        listing.add_options(options)
        more = f" (first {self.MAX_ENTRIES} of {len(entries)})" if len(entries) > self.MAX_ENTRIES else ""
        self.query_one("#folder", Label).update(f"in {folder}{more}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        target = self.folder.parent if event.option.id == ".." else Path(event.option.id)
        path_input = self.query_one("#path", Input)
        path_input.value = str(target) + ("/" if target.is_dir() else "")
        path_input.cursor_position = len(path_input.value)
        if target.is_file():
            path_input.focus()

    def action_complete(self) -> None:
        """Tab in the path field: complete to the longest common prefix of the matching entries; with
        nothing to complete, Tab moves on (to the list below), as everywhere else."""
        path_input = self.query_one("#path", Input)
        if self.focused is not path_input or not self._complete(path_input):
            self.focus_next()

    def _complete(self, path_input: Input) -> bool:
        """Extend the typed path; False when there is nothing to add."""
        raw = Path(path_input.value).expanduser()
        folder, prefix = (raw, "") if path_input.value.endswith("/") else (raw.parent, raw.name)
        try:
            names = [p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                     if p.name.startswith(prefix) and not p.name.startswith(".") and (p.is_dir() or self._wanted(p))]
        except OSError:
            return False
        if not names:
            return False
        common = names[0] if len(names) == 1 else _common_prefix(names)
        if len(common) <= len(prefix):
            return False
        path_input.value = str(folder / common) + ("/" if common.endswith("/") else "")
        path_input.cursor_position = len(path_input.value)
        return True

    def key_down(self, event) -> None:
        """Down in the path field goes to the list of entries."""
        if self.focused is self.query_one("#path", Input):
            event.stop()
            self.query_one("#entries").focus()

    # ------------------------------------------------------------ the form

    def problem(self) -> str | None:
        raw = self.query_one("#path", Input).value.strip()
        if not raw:
            return "choose a file"
        path = Path(raw).expanduser()
        if not path.exists():
            return f"no such file: {path}"
        if not path.is_file():
            return f"{path} is a folder: pick a file in it"
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
        if event.input.id == "f-name":
            self._name_touched = True
        if event.input.id == "path":
            raw = event.value
            path = Path(raw).expanduser()
            if raw.endswith("/") and path.is_dir():
                self.show_folder(path)
            elif path.parent.is_dir():
                self.show_folder(path.parent, path.name)
            if path.is_file():
                self._fill_name(path)
        browsing = event.input.id == "path" and Path(event.value).expanduser().is_dir()
        self.query_one("#form-error", Label).update("" if browsing else self.problem() or "")

    def _fill_name(self, path: Path) -> None:
        if self._name_touched or not self.query("#f-name"):
            return
        name_input = self.query_one("#f-name", Input)
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem).strip("-") or "data"
        with name_input.prevent(Input.Changed):
            name_input.value = stem

    def values(self) -> dict:
        path = Path(self.query_one("#path", Input).value.strip()).expanduser()
        self.app.last_folder = path.parent  # the next picker starts here
        result = {"path": str(path)}
        result.update({f.name: self._value(f) for f in self.fields})
        return result


def _common_prefix(names: list[str]) -> str:
    import os

    return os.path.commonprefix(names)
