"""The full-screen app: six modes (Models, Data, Train, Chat, Dialogue, Evaluate) over the core.

Start-up stays cheap: the workspace opens without the starter model (that needs torch), screen modules
are imported when their mode is first shown, and torch loads only when a model is used (in a worker).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from ..core.context import Context, open_workspace
from ..core.errors import WorkbenchError
from .format import one_line
from .modes import MODES_SPEC
from .workers import StarterFailed, StarterPrepared, StarterProgress, prepare_starter


def _screen_factory(target: str):
    def make() -> Screen:
        module_name, class_name = target.split(":")
        module = importlib.import_module(f"{__package__}.screens.{module_name}")
        return getattr(module, class_name)()

    return make


class WorkbenchApp(App):
    TITLE = "Workbench"
    CSS_PATH = "workbench.tcss"
    # Screens get -narrow below 100 columns (80x24 terminals): side panels fold, forms use one column.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    # Recipes is a mode too (reached from the palette, not a number key): a mode keeps its screen, so a
    # recipe running while the user looks elsewhere is still on show when they come back.
    MODES = {**{name: _screen_factory(target) for name, (_, _, target) in MODES_SPEC.items()},
             "recipes": _screen_factory("recipes:RecipesScreen")}
    BINDINGS = [
        # 1-6 switch modes (when no text field has the focus); F1-F6 work from anywhere.
        *[Binding(key, f"show_mode('{name}')", title, show=False)
          for name, (key, title, _) in MODES_SPEC.items()],
        # Not in the footer: the mode bar at the top shows these keys.
        *[Binding(f"f{key}", f"show_mode('{name}')", title, show=False, priority=True)
          for name, (key, title, _) in MODES_SPEC.items()],
        Binding("question_mark", "help", "Help", key_display="?"),
        # Screens without their own Esc: it leaves a text box, so that ? and 1-6 work again.
        Binding("escape", "screen.leave_text_field", "Leave field", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, home: str | Path | None = None, *, ctx: Context | None = None,
                 start_mode: str = "models"):
        super().__init__()
        self.ctx = ctx or open_workspace(home, starter=False)
        self.start_mode = start_mode
        self._model_cache = None
        self.last_folder: Path | None = None  # where the last file picker picked a file
        self.preparing_starter = False  # True while a fresh workspace's starter models are made
        self.starter_status = ""  # the step it is at
        # Published (with what changed: "models", "datasets", ...) after a worker changes the registry.
        self.registry_changed: Signal[str] = Signal(self, "registry-changed")
        self.sub_title = str(self.ctx.ws.home)

    # ------------------------------------------------------------ shared services

    @property
    def model_cache(self):
        """Loaded models shared by Chat, Dialogue and Evaluate (created on first use)."""
        if self._model_cache is None:
            from ..core.models import ModelCache

            self._model_cache = ModelCache(max_models=3)
        return self._model_cache

    def report_error(self, error: BaseException | str, title: str | None = None) -> None:
        """Errors become notifications with the same one-line message as the CLI."""
        text = error if isinstance(error, str) else one_line(error)
        if not isinstance(error, (str, WorkbenchError)):
            self.log.error(repr(error))
        self.notify(text, title=title or "", severity="error", timeout=8)

    # ------------------------------------------------------------ start-up

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        if not self.ctx.registry.list_models():
            self.preparing_starter = True
            ctx = self.ctx
            self.run_worker(partial(prepare_starter, ctx, self.post_message), thread=True, exclusive=True,
                            group="starter", exit_on_error=False, name="starter models")

    def on_starter_prepared(self, message: StarterPrepared) -> None:
        self.last_folder: Path | None = None  # where the last file picker picked a file
        self.preparing_starter = False
        for text in message.created:
            self.notify(text)
        self.registry_changed.publish("models")

    def on_starter_failed(self, message: StarterFailed) -> None:
        self.last_folder: Path | None = None  # where the last file picker picked a file
        self.preparing_starter = False
        self.report_error(f"could not prepare the starter models: {message.text}")
        self.registry_changed.publish("models")

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # ------------------------------------------------------------ modes

    async def action_show_mode(self, mode: str) -> None:
        await self.switch_mode(mode)

    async def show(self, mode: str) -> Screen:
        """Switch to `mode` and return its screen once it is mounted."""
        await self.switch_mode(mode)
        return self.screen

    async def open_chat(self, model: str) -> None:
        screen = await self.show("chat")
        screen.use_model(model)

    async def open_evaluate(self, model: str) -> None:
        screen = await self.show("evaluate")
        screen.use_model(model)

    async def open_finetune(self, model: str) -> None:
        screen = await self.show("train")
        screen.use_base_model(model)

    def open_recipes(self) -> None:
        if self.current_mode != "recipes":
            self.mode_before_recipes = self.current_mode
            self.switch_mode("recipes")

    def close_recipes(self) -> None:
        self.switch_mode(getattr(self, "mode_before_recipes", None) or "models")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Keys help (?)", "Every key of this screen and of the app", self.action_help)
        yield SystemCommand("Recipes", "Run the original experiments and compare with their figures",
                            self.open_recipes)
        for name, (key, title, _) in MODES_SPEC.items():
            yield SystemCommand(f"{title} ({key})", f"Switch to the {title} screen",
                                partial(self.run_action, f"show_mode('{name}')"))
        # The current screen's own actions, by name.
        for binding in getattr(screen, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(f"{binding.description} ({binding.key})",
                                    getattr(binding, "tooltip", "") or f"{screen.__class__.__name__[:-6]} action",
                                    partial(screen.run_action, binding.action))
        yield from super().get_system_commands(screen)


def run_app(home: str | None = None) -> int:
    try:
        app = WorkbenchApp(home)
    except WorkbenchError as error:
        import sys

        print(f"workbench: error: {error}", file=sys.stderr)
        return 1
    app.run()
    return 0
