"""What every mode screen shares: the mode bar, the footer, the workspace and error reporting.

Workers (threads) never touch widgets: they post the typed messages below (or a screen's own), and the
handlers, on the event loop, update the widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from ..format import one_line
from ..widgets.modebar import ModeBar

if TYPE_CHECKING:
    from ...core.context import Context
    from ..app import WorkbenchApp


class OperationFailed(Message):
    """A worker's operation failed; `text` is the one-line message for the user."""

    def __init__(self, group: str, text: str):
        super().__init__()
        self.group = group
        self.text = text


class OperationDone(Message):
    """A worker's operation finished; `text` (when set) is said to the user, `data` is its result."""

    def __init__(self, group: str, text: str = "", data=None, changed: str | None = None):
        super().__init__()
        self.group = group
        self.text = text
        self.data = data
        self.changed = changed  # what in the registry changed ("models", "datasets", ...), if anything


class WorkbenchScreen(Screen):
    MODE: ClassVar[str] = ""

    def compose(self) -> ComposeResult:
        yield ModeBar(self.MODE, id="modebar")
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def wb(self) -> "WorkbenchApp":
        return self.app  # type: ignore[return-value]

    @property
    def ctx(self) -> "Context":
        return self.wb.ctx

    def fail(self, group: str, error: BaseException) -> None:
        """From a worker thread: report `error` to the user through a message."""
        self.post_message(OperationFailed(group, one_line(error)))

    def on_operation_failed(self, message: OperationFailed) -> None:
        self.wb.report_error(message.text)
        self.operation_ended(message.group, ok=False)

    def on_operation_done(self, message: OperationDone) -> None:
        if message.text:
            self.notify(message.text)
        self.operation_ended(message.group, ok=True, data=message.data)
        if message.changed:
            self.wb.registry_changed.publish(message.changed)

    def run_in_thread(self, group: str, fn: Callable[[], Any], success: str | Callable[[Any], str] = "",
                      changed: str | None = None) -> None:
        """Run `fn` in a thread worker (one per group at a time); its result or error comes back as
        OperationDone / OperationFailed, handled on the event loop."""

        def body() -> None:
            try:
                result = fn()
                text = success(result) if callable(success) else success
            except Exception as error:  # noqa: BLE001 - every failure becomes a notification
                self.fail(group, error)
                return
            self.post_message(OperationDone(group, text, result, changed))

        self.run_worker(body, thread=True, exclusive=True, group=group, exit_on_error=False, name=group)

    def leave_text_field(self) -> None:
        """Esc with nothing to stop: leave the text box, so that ? and the digit keys (which a text box
        types) reach the app again."""
        from textual.widgets import Input, TextArea

        if not isinstance(self.focused, (Input, TextArea)):
            return
        # Focus moves to a widget that types nothing (the transcript, a table), not to None: a screen
        # coming back from the help with nothing focused would focus its first field again.
        landing = next((w for w in self.query("Transcript, DataTable") if w.focusable), None)
        self.set_focus(landing)
        self.notify("left the text box: ? help, 1-6 switch screens, Tab goes back", timeout=4)

    def action_leave_text_field(self) -> None:
        self.leave_text_field()

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        """Hook: a worker of `group` finished (successfully or not)."""

    def on_mount(self) -> None:
        self.wb.registry_changed.subscribe(self, self._on_registry_changed)

    def _on_registry_changed(self, what: str) -> None:
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Hook: re-read what the screen shows from the registry."""
