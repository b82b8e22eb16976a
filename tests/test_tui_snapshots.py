"""Snapshot tests of the main screens at a pinned size (pytest-textual-snapshot).

The workspace content is made path- and time-independent: fixed creation times and hashes, a dataset
from a fixed text. Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the report."""

from __future__ import annotations

import pytest

from workbench.core.context import open_workspace
from workbench.tui.app import WorkbenchApp

FIXED_TIME = "2025-01-01T12:00:00+00:00"
TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
        "nothing to do: once or twice she had peeped into the book her sister was reading.\n\n") * 30


@pytest.fixture
def snap_home(home, tmp_path):
    from dataclasses import replace

    from workbench.core.data import add_dataset

    ctx = open_workspace(home)
    source = tmp_path / "tiny.txt"
    source.write_text(TEXT)
    add_dataset(ctx, "tiny", source)
    base = ctx.registry.get_model("tiny-neo")
    ctx.registry.add_model(replace(base, name="tiny-neo-tiny", parent="tiny-neo", source="fine-tuned",
                                   dataset="tiny", job_id=1, meta={"final_train_loss": 6.25}))
    ctx.registry.add_evaluation("tiny-neo-tiny", "perplexity", 512.25, target="tiny:test")
    for record in ctx.registry.list_models():
        ctx.registry.update_model(record.name, created_at=FIXED_TIME, sha256="0" * 64)
    ctx.registry.db.execute("UPDATE evaluations SET created_at = ?", [FIXED_TIME])
    ctx.registry.db.conn.commit()
    ctx.registry.close()
    return home


SIZES = {"80x24": (80, 24), "120x36": (120, 36)}
# screen -> (start mode, keys pressed before the snapshot)
SCREENS = {
    "models": ("models", ["down"]),
    "data": ("data", []),
    "train-jobs": ("train", []),
    "train-new-job": ("train", ["n"]),
    "chat": ("chat", []),
    "dialogue": ("dialogue", []),
    "evaluate": ("evaluate", []),
    "help": ("train", ["question_mark"]),
}


async def settled(pilot) -> None:
    """Workers done and the messages they and the first mount posted (focus moves, selects) handled."""
    await pilot.app.workers.wait_for_complete()
    for text_input in pilot.app.screen.query("Input"):
        text_input.cursor_blink = False  # a steady cursor: the picture never depends on the blink phase
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_home, snap_compare, screen, size):
    mode, keys = SCREENS[screen]
    assert snap_compare(WorkbenchApp(snap_home, start_mode=mode), terminal_size=SIZES[size], press=keys,
                        run_before=settled)
