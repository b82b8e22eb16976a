"""4 Chat: pick a model, talk to it; tokens appear as they are generated. Chat models get the whole
history through their chat template, after the optional system prompt; the status line says which mode.

Generation runs in a thread worker (`generate_reply`) that posts ChatToken / ChatDone messages; the
handlers append to the transcript. Esc sets the stop event, which ends generation at the next token."""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select

from ...core.errors import WorkbenchError
from ...core.evaluation.samples import blank_reply_note
from ..loading import load_model
from ..widgets.settings import SettingsPanel, toggle_settings
from ..widgets.transcript import Bubble, Transcript
from .base import WorkbenchScreen
from .dialogs import PickDialog


class ChatStatus(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class ChatToken(Message):
    def __init__(self, piece: str):
        super().__init__()
        self.piece = piece


class ChatDone(Message):
    def __init__(self, model: str, stopped: bool, prompt: str = ""):
        super().__init__()
        self.model = model
        self.stopped = stopped
        self.prompt = prompt  # the exact prompt text the model was given


class ChatScreen(WorkbenchScreen):
    """Talk to a model: type and Enter; Esc stops a reply (or leaves the text box). Sessions save (ctrl+s)
    and load (ctrl+o); ctrl+t shows or hides the generation settings."""

    MODE = "chat"
    BINDINGS = [
        Binding("ctrl+n", "new_session", "New"),
        Binding("ctrl+o", "load_session", "Load"),
        Binding("ctrl+s", "save_session", "Save"),
        Binding("ctrl+t", "toggle_settings", "Settings"),
        Binding("ctrl+l", "pick_model", "Model"),
        Binding("escape", "stop", "Stop"),
    ]

    def __init__(self):
        super().__init__()
        from ...core.sessions import Session

        self.session = Session("chat", [])
        self.dirty = False
        self.generating = False
        self.stop_event = threading.Event()
        self.reply_bubble: Bubble | None = None
        self.reply_tokens = 0  # streamed pieces of the reply being written
        self._pending_model: str | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-main"):
                with Horizontal(classes="toolbar"):
                    yield Label("Model", classes="toolbar-label")
                    yield Select([], prompt="pick a model", id="chat-model", compact=True)
                    yield Label("", id="chat-status", classes="status", markup=False)
                yield Input(placeholder="System prompt (optional, for chat models)", id="chat-system",
                            compact=True, select_on_focus=False)
                yield Transcript(id="chat-log")
                # No select-on-focus: focus coming back (after help, a dialog) must not leave a draft one key
                # from gone.
                yield Input(placeholder="Message (Enter sends, Esc stops)", id="chat-input",
                            select_on_focus=False)
            yield SettingsPanel(id="chat-settings")

    def on_mount(self) -> None:
        self.refresh_data()
        self.query_one("#chat-input", Input).focus()
        self.set_status("")

    # ------------------------------------------------------------ models

    def refresh_data(self) -> None:
        try:
            select = self.query_one("#chat-model", Select)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        names = [m.name for m in self.ctx.registry.list_models()]
        current = self._pending_model or (select.value if select.value is not Select.NULL else None)
        select.set_options([(n, n) for n in names])
        if current in names:
            select.value = current
        elif names and select.value is Select.NULL:
            from ...core.models.starter import CHAT_STARTER

            # Start on the chat model (the starter tiny-neo is an untrained base, registered first).
            select.value = CHAT_STARTER if CHAT_STARTER in names else names[0]
        self._pending_model = None

    def use_model(self, name: str) -> None:
        """Called by "chat with" on the Models screen."""
        self._pending_model = name
        self.refresh_data()
        self.query_one("#chat-input", Input).focus()
        self.set_status(f"chatting with {name}")

    @property
    def model(self) -> str | None:
        value = self.query_one("#chat-model", Select).value
        return None if value is Select.NULL else str(value)

    def action_pick_model(self) -> None:
        select = self.query_one("#chat-model", Select)
        select.focus()
        select.expanded = True

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "chat-model" and event.value is not Select.NULL:
            if self.focused is event.select:  # the user picked it (not a refresh of the list): type next
                self.query_one("#chat-input", Input).focus()
            if not self.generating:
                self.preload(str(event.value))

    @work(thread=True, exclusive=True, group="chat-preload", exit_on_error=False)
    def preload(self, model: str) -> None:
        """Load the picked model while the user types: the first reply then waits for its first token
        only (starting PyTorch and reading the weights take seconds). Progress shows in the status line."""
        try:
            cache, registry = self.wb.model_cache, self.ctx.registry
            if not cache.has(registry, model):
                load_model(cache, registry, model, lambda text: self.post_message(ChatStatus(text)))
                self.post_message(ChatStatus(f"{model} is loaded: type a message"))
        except Exception as error:  # noqa: BLE001 - a notification now; a message would report it again
            self.post_message(ChatStatus(f"cannot load {model} (see the notification)"))
            self.fail("chat-preload", error)

    # ------------------------------------------------------------ sending

    def set_status(self, text: str) -> None:
        title = self.session.title or "new session"
        mark = " *" if self.dirty else ""
        self.query_one("#chat-status", Label).update(text or f"{title}{mark}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            return
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("still writing the last reply (Esc stops it)", severity="warning")
            return
        model = self.model
        if model is None:
            self.wb.report_error("pick a model first (ctrl+l)")
            return
        try:
            settings = self.query_one(SettingsPanel).settings()
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        event.input.value = ""
        from ...core.chat import chat_messages

        self.session.system = self.query_one("#chat-system", Input).value.strip()
        messages = chat_messages(self.session.chat_history(), text, self.session.system)
        self.session.add("user", text)
        self.session.settings = settings.to_dict()
        if model not in self.session.models:
            self.session.models.append(model)
        self.dirty = True
        log = self.query_one(Transcript)
        log.add("user", text, "you")
        self.reply_bubble = log.add("model", "", model)
        self.reply_bubble.add_class("-streaming")
        self.reply_tokens = 0
        self.generating = True
        self.stop_event = threading.Event()
        self.generate_reply(model, messages, settings, self.stop_event)

    @work(thread=True, exclusive=True, group="chat", exit_on_error=False)
    def generate_reply(self, model: str, messages: list[dict], settings, stop) -> None:
        from ...core.chat import build_prompt, chat_reply

        try:
            registry = self.ctx.registry
            loaded = load_model(self.wb.model_cache, registry, model,
                                lambda text: self.post_message(ChatStatus(text)))
            prompt = build_prompt(loaded, messages, settings,
                                  warn=lambda m: self.post_message(ChatStatus(f"warning: {m}")))
            self.post_message(ChatStatus(f"{model} is writing: {loaded.chat_format.describe()} (Esc stops)"))
            for piece in chat_reply(loaded, prompt, settings, stop=stop):
                self.post_message(ChatToken(piece))
            self.post_message(ChatDone(model, stopped=stop.is_set(), prompt=prompt.text))
        except Exception as error:  # noqa: BLE001 - reported as a notification
            self.fail("chat", error)

    def on_chat_status(self, message: ChatStatus) -> None:
        self.set_status(message.text)

    def on_chat_token(self, message: ChatToken) -> None:
        if self.reply_bubble is not None:
            self.reply_tokens += 1
            self.reply_bubble.append(message.piece)
            self.query_one(Transcript).follow()

    def on_chat_done(self, message: ChatDone) -> None:
        bubble, self.reply_bubble = self.reply_bubble, None
        self.generating = False
        if bubble is None:
            return
        bubble.remove_class("-streaming")
        note = blank_reply_note(bubble.text, self.reply_tokens)
        reply = bubble.text.strip()
        bubble.set_text(reply or f"({note})")
        self.session.add("model", reply, model=message.model, prompt=message.prompt)
        self.set_status("stopped" if message.stopped else (f"{note} (ctrl+t: settings)" if note else ""))

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        if group == "chat" and not ok:
            self.generating = False
            if self.reply_bubble is not None:
                self.reply_bubble.remove()
                self.reply_bubble = None
            # The user turn stays in the transcript; drop it from the session so a retry is clean.
            if self.session.turns and self.session.turns[-1].speaker == "user":
                self.session.turns.pop()
            self.set_status("")

    def action_stop(self) -> None:
        if not self.stop_reply():
            self.leave_text_field()

    def stop_reply(self) -> bool:
        """Stop a reply being generated; False when none is."""
        if not self.generating:
            return False
        self.stop_event.set()
        self.set_status("stopping...")
        return True

    def action_toggle_settings(self) -> None:
        toggle_settings(self, "#chat-input")

    # ------------------------------------------------------------ sessions

    def action_new_session(self) -> None:
        from ...core.sessions import Session

        self.stop_reply()
        self.reply_bubble = None
        self.session = Session("chat", [])
        self.dirty = False
        self.query_one(Transcript).clear()
        self.set_status("")
        self.query_one("#chat-input", Input).focus()

    def action_save_session(self) -> None:
        if not self.session.turns:
            self.notify("nothing to save yet", severity="warning")
            return
        from ...core.sessions import save_session

        try:
            record = save_session(self.ctx, self.session)
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        self.dirty = False
        self.set_status("")
        self.notify(f"session {record.id} saved ({record.turns} turns)")

    def action_load_session(self) -> None:
        sessions = [s for s in self.ctx.registry.list_sessions() if s.kind == "chat"]
        items = [(s.id, f"{s.title or '(untitled)'}  ({', '.join(s.models)}; {s.turns} turns)")
                 for s in reversed(sessions)]
        self.app.push_screen(PickDialog("Load a chat session", items, "no saved chat sessions"),
                             self._load)

    def _load(self, session_id: str | None) -> None:
        if not session_id:
            return
        from ...core.sessions import load_session

        try:
            session = load_session(self.ctx, session_id)
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        self.stop_reply()
        self.reply_bubble = None
        self.session = session
        self.dirty = False
        self.query_one("#chat-system", Input).value = session.system
        log = self.query_one(Transcript)
        log.clear()
        for turn in session.turns:  # drawn as the live chat drew them
            if turn.speaker == "user":
                log.add("user", turn.text, "you")
            else:
                log.add("model", turn.text or "(no visible text)", turn.model or "model")
        if session.settings:
            self.query_one(SettingsPanel).load(session.settings)
        if session.models:
            self._pending_model = session.models[-1]
            self.refresh_data()
        self.set_status("")
        self.notify(f"loaded session {session.id}")
