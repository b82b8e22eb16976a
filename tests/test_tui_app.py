"""App-level pilot tests: key help, the footer, the starter models of a fresh workspace, key choices that
terminals cannot send, and the app/worker layering."""

from __future__ import annotations

import ast
from pathlib import Path

from textual.binding import Binding
from textual.widgets import Footer, Input, Static

from workbench.tui.app import WorkbenchApp
from workbench.tui.modes import MODES_SPEC

from tui_helpers import SIZE, notes, settle, table_column, visible_text

TUI = Path(__file__).resolve().parents[1] / "workbench" / "tui"


def footer_keys(app) -> list[str]:
    """What the footer shows: the descriptions of the screen's active, shown bindings."""
    assert app.screen.query_one(Footer)
    return [active.binding.description for active in app.screen.active_bindings.values()
            if active.binding.show and active.enabled]


async def test_question_mark_opens_key_help_for_the_screen_and_escape_closes_it(home):
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        from workbench.tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        text = visible_text(app.screen.query_one("#help-keys", Static))
        # the Train screen's own keys (shown in the footer or not) and the app's
        for expected in ("ctrl+r", "Start", "Resume", "Log scale", "ctrl+q", "quit", "1-6"):
            assert expected in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "train" and not isinstance(app.screen, HelpScreen)


async def test_every_screen_footer_shows_help_and_quit(home):
    app = WorkbenchApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in MODES_SPEC:
            await app.switch_mode(mode)
            await pilot.pause()
            keys = footer_keys(app)
            assert "Quit" in keys, (mode, " ".join(keys))
            # `?` types a question mark in a text field; elsewhere the footer offers it
            typing = isinstance(app.focused, Input)
            assert typing or "Help" in keys, (mode, " ".join(keys))
            assert any(c.title.startswith("Keys help") for c in app.get_system_commands(app.screen))


async def test_no_binding_uses_a_key_that_terminals_send_as_another():
    # ctrl+h arrives as Backspace, ctrl+i as Tab, ctrl+m as Enter, ctrl+[ as Escape
    import importlib

    aliased = {"ctrl+h", "ctrl+i", "ctrl+m", "ctrl+j"}
    classes = [WorkbenchApp]
    for module_name, class_name in (target.split(":") for _, _, target in MODES_SPEC.values()):
        classes.append(getattr(importlib.import_module(f"workbench.tui.screens.{module_name}"), class_name))
    for cls in classes:
        for binding in cls.BINDINGS:
            keys = binding.key.split(",") if isinstance(binding, Binding) else binding[0].split(",")
            assert aliased.isdisjoint(k.strip() for k in keys), (cls.__name__, binding)


def test_workers_import_nothing_from_the_app():
    """Workers send results up as messages; no tui module imports the app module except the CLI entry."""
    for path in TUI.rglob("*.py"):
        if path.name == "app.py":
            continue
        tree = ast.parse(path.read_text())
        for node in list(ast.walk(tree)):  # type-only imports (under `if TYPE_CHECKING`) never run
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.endswith("app") or node.module.startswith("textual"), (path, node.module)


async def test_a_fresh_workspace_says_it_is_preparing_the_starter_models(tmp_path):
    """Like `workbench init`: tiny-neo, then the chat model smollm2 when its GGUF package is installed."""
    from workbench.core.models.starter import smollm2_gguf

    app = WorkbenchApp(tmp_path / "fresh")
    async with app.run_test(size=SIZE) as pilot:
        detail = visible_text(app.screen.query_one("#model-detail-text", Static))
        assert "Preparing the starter models" in detail and "press n" not in detail
        await settle(pilot)
        assert not app.preparing_starter
        names = table_column(app.screen.query_one("#models-table"))
        assert "tiny-neo" in names
        if smollm2_gguf() is not None:
            assert "smollm2" in names and any("imported the chat model 'smollm2'" in n for n in notes(app))
        assert app.screen.query_one("#models-table").border_subtitle == ""
        detail = visible_text(app.screen.query_one("#model-detail-text", Static))
        assert "Preparing" not in detail


async def test_at_80_columns_the_chat_settings_fold_away_and_ctrl_t_brings_them_back(home):
    app = WorkbenchApp(home, start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.screen.query_one("#chat-settings")
        assert not panel.display and app.screen.has_class("-narrow")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert panel.display
    app = WorkbenchApp(home, start_mode="chat")
    async with app.run_test(size=(120, 36)) as pilot:
        assert app.screen.query_one("#chat-settings").display


async def test_esc_leaves_a_text_box_so_that_help_and_digits_work_again(home):
    from workbench.tui.screens.help import HelpScreen

    for mode in ("chat", "dialogue"):
        app = WorkbenchApp(home, start_mode=mode)
        async with app.run_test(size=(80, 24)) as pilot:
            field = app.screen.query_one("#chat-input" if mode == "chat" else "#dialogue-opening", Input)
            field.focus()
            await pilot.press("h", "i", "question_mark", "1")
            assert field.value == "hi?1" and app.current_mode == mode  # a text box types them
            await pilot.press("escape")
            await pilot.pause()
            assert app.focused is not field and any("left the text box" in n for n in notes(app))
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")  # closes the help: focus stays out of the text box
            await pilot.pause()
            assert app.focused is not field
            await pilot.press("2")
            await pilot.pause()
            assert app.current_mode == "data" and field.value == "hi?1"  # nothing typed was lost


async def test_at_80x24_a_form_says_when_fields_are_hidden_below_the_fold(home):
    from workbench.tui.widgets.hinted_scroll import HINT

    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        fields = app.screen.query_one("#train-fields")
        assert fields.max_scroll_y > 0 and fields.border_subtitle == HINT and fields.has_class("-more-below")
        fields.scroll_end(animate=False)
        await pilot.pause()
        await pilot.pause()
        assert fields.border_subtitle == "" and not fields.has_class("-more-below")
    app = WorkbenchApp(home, start_mode="train")
    async with app.run_test(size=(120, 60)) as pilot:  # a tall terminal hides nothing: no hint
        await pilot.press("n")
        await pilot.pause()
        assert app.screen.query_one("#train-fields").border_subtitle == ""


async def test_chat_loads_the_picked_model_before_the_first_message(home):
    app = WorkbenchApp(home, start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await settle(pilot)
        model = app.screen.model
        assert model and app.model_cache.has(app.ctx.registry, model)  # loaded while nobody typed
        assert visible_text(app.screen.query_one("#chat-status")) == f"{model} is loaded: type a message"
