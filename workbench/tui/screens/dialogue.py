"""5 Dialogue: two models, the personas they speak as (Alice and Edgar unless renamed) and an opening
line said by B's persona; turns appear one by one, A on the left in one colour, B on the right in another. Esc stops at any time (turns still being written are dropped); ctrl+s saves."""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select

from ...core.errors import WorkbenchError
from ..loading import load_model
from ..widgets.settings import SettingsPanel, toggle_settings
from ..widgets.transcript import Transcript
from .base import WorkbenchScreen

DEFAULT_SETTINGS = {"max_new_tokens": 40, "do_sample": True, "temperature": 0.9, "top_k": 50, "seed": 0}


class DialogueStatus(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class DialogueTurnReady(Message):
    def __init__(self, run: int, speaker: str, model: str, text: str, persona: str = "", prompt: str = ""):
        super().__init__()
        self.run = run
        self.speaker = speaker
        self.model = model
        self.text = text
        self.persona = persona
        self.prompt = prompt


class DialogueFinished(Message):
    def __init__(self, run: int, stopped: bool):
        super().__init__()
        self.run = run
        self.stopped = stopped


class DialogueScreen(WorkbenchScreen):
    """Two models talk: pick A and B, type an opening line, Enter starts, Esc stops (or leaves the text box), ctrl+s saves."""

    MODE = "dialogue"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+n", "clear", "Clear"),
        Binding("ctrl+t", "toggle_settings", "Settings"),
    ]

    def __init__(self):
        super().__init__()
        from ...core.sessions import Session

        self.session = Session("dialogue", [])
        self.running = False
        self.run_id = 0
        self.stop_event = threading.Event()

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="dialogue-body"):
            with Vertical(id="dialogue-main"):
                with Horizontal(classes="toolbar"):
                    yield Label("A", classes="toolbar-label voice-a")
                    yield Select([], prompt="model A", id="model-a", compact=True)
                    yield Label("B", classes="toolbar-label voice-b")
                    yield Select([], prompt="model B", id="model-b", compact=True)
                    yield Label("Turns", classes="toolbar-label")
                    yield Input("6", id="dialogue-turns", compact=True, type="integer")
                with Horizontal(classes="toolbar"):
                    yield Label("A speaks as", classes="toolbar-label voice-a")
                    yield Input("Alice", id="persona-a", compact=True)
                    yield Label("B speaks as", classes="toolbar-label voice-b")
                    yield Input("Edgar", id="persona-b", compact=True)
                yield Input(placeholder="Opening line (Enter starts, Esc stops)", id="dialogue-opening",
                            select_on_focus=False)
                yield Label("", id="dialogue-status", classes="status", markup=False)
                yield Transcript(id="dialogue-log")
            yield SettingsPanel(DEFAULT_SETTINGS, id="dialogue-settings")

    def on_mount(self) -> None:
        self.query_one(SettingsPanel).display = False
        self.refresh_data()
        self.query_one("#dialogue-opening", Input).focus()

    def refresh_data(self) -> None:
        try:
            selects = [self.query_one("#model-a", Select), self.query_one("#model-b", Select)]
        except Exception:  # noqa: BLE001 - not composed yet
            return
        names = [m.name for m in self.ctx.registry.list_models()]
        for index, select in enumerate(selects):
            current = select.value
            select.set_options([(n, n) for n in names])
            if current in names:
                select.value = current
            elif names:
                select.value = names[min(index, len(names) - 1)]

    def set_models(self, a: str, b: str) -> None:
        self.query_one("#model-a", Select).value = a
        self.query_one("#model-b", Select).value = b

    def set_status(self, text: str) -> None:
        self.query_one("#dialogue-status", Label).update(text)

    # ------------------------------------------------------------ running

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def action_start(self) -> None:
        if self.running:
            self.notify("a dialogue is running (Esc stops it)", severity="warning")
            return
        values = [self.query_one(f"#model-{s}", Select).value for s in "ab"]
        if any(v is Select.NULL for v in values):
            self.wb.report_error("pick both models first")
            return
        opening = self.query_one("#dialogue-opening", Input).value.strip()
        try:
            if not opening:
                raise WorkbenchError("the opening line is empty")
            raw_turns = self.query_one("#dialogue-turns", Input).value.strip()
            if not raw_turns.isdigit() or int(raw_turns) < 1:
                raise WorkbenchError(f"turns must be a whole number of at least 1 (got '{raw_turns}')")
            settings = self.query_one(SettingsPanel).settings()
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        from ...core.sessions import Session

        from ...core.chat import DEFAULT_PERSONAS

        model_a, model_b = str(values[0]), str(values[1])
        personas = tuple(self.query_one(f"#persona-{s}", Input).value.strip() or default
                         for s, default in zip("ab", DEFAULT_PERSONAS))
        self.session = Session("dialogue", [model_a, model_b], settings=settings.to_dict(),
                               personas=list(personas))
        self.session.add("opening", opening, persona=personas[1])
        log = self.query_one(Transcript)
        log.clear()
        log.add("opening", opening, f"{personas[1]} (opening)")
        self.running = True
        self.run_id += 1
        self.stop_event = threading.Event()
        self.run_dialogue(self.run_id, (model_a, model_b), personas, opening, int(raw_turns), settings,
                          self.stop_event)

    @work(thread=True, exclusive=True, group="dialogue", exit_on_error=False)
    def run_dialogue(self, run: int, models: tuple[str, str], personas: tuple[str, str], opening: str,
                     turns: int, settings, stop: threading.Event) -> None:
        from ...core.chat import run_dialogue

        model_a, model_b = models
        try:
            registry, cache = self.ctx.registry, self.wb.model_cache
            say = lambda text: self.post_message(DialogueStatus(text))  # noqa: E731
            loaded = (load_model(cache, registry, model_a, say), load_model(cache, registry, model_b, say))
            for index, turn in enumerate(run_dialogue(loaded, opening, turns, settings, stop=stop,
                                                      personas=personas)):
                if stop.is_set():
                    break
                self.post_message(DialogueTurnReady(run, turn.speaker, turn.model or "", turn.text,
                                                    turn.persona, turn.prompt))
                if index + 1 < turns:
                    nxt = model_b if turn.speaker == "A" else model_a
                    self.post_message(DialogueStatus(f"{nxt} is thinking... (Esc stops)"))
            self.post_message(DialogueFinished(run, stop.is_set()))
        except Exception as error:  # noqa: BLE001 - reported as a notification
            self.fail("dialogue", error)

    def on_dialogue_status(self, message: DialogueStatus) -> None:
        if self.running:
            self.set_status(message.text)

    def on_dialogue_turn_ready(self, message: DialogueTurnReady) -> None:
        if message.run != self.run_id or not self.running:
            return  # a turn from a dialogue that was stopped
        self.session.add(message.speaker, message.text, model=message.model, prompt=message.prompt,
                         persona=message.persona)
        self.query_one(Transcript).add(message.speaker.lower(), message.text,
                                       f"{message.persona} ({message.speaker}: {message.model})")

    def on_dialogue_finished(self, message: DialogueFinished) -> None:
        if message.run != self.run_id:
            return
        if self.running:
            self.running = False
            turns = len(self.session.turns) - 1
            self.set_status(f"{'stopped' if message.stopped else 'finished'} after {turns} turns "
                            "(ctrl+s saves the transcript)")

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        if group == "dialogue" and not ok:
            self.running = False
            self.set_status("")

    def action_stop(self) -> None:
        if not self.stop_dialogue():
            self.leave_text_field()

    def stop_dialogue(self) -> bool:
        """Stop a running dialogue; False when none runs."""
        if not self.running:
            return False
        self.stop_event.set()
        self.running = False
        turns = len(self.session.turns) - 1
        self.set_status(f"stopped after {turns} turns (ctrl+s saves the transcript)")
        return True

    def action_clear(self) -> None:
        from ...core.sessions import Session

        self.stop_dialogue()
        self.session = Session("dialogue", [])
        self.query_one(Transcript).clear()
        self.set_status("")

    def action_toggle_settings(self) -> None:
        toggle_settings(self, "#dialogue-opening")

    def action_save(self) -> None:
        if len(self.session.turns) < 1:
            self.notify("nothing to save yet", severity="warning")
            return
        from ...core.sessions import save_session

        try:
            record = save_session(self.ctx, self.session)
        except WorkbenchError as error:
            self.wb.report_error(error)
            return
        self.notify(f"transcript saved: session {record.id} ({record.turns} turns)")
