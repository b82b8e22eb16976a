"""Snapshot tests of the main screens at a pinned size (pytest-textual-snapshot).

The workspace content is made path- and time-independent: fixed creation times and hashes, a dataset
from a fixed text. Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the report."""

from __future__ import annotations

import pytest

from workbench.core.context import open_workspace
from workbench.tui.app import WorkbenchApp

SIZE = (100, 30)
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


def test_models_screen(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home), terminal_size=SIZE, press=["down"])


def test_models_screen_80x24(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home), terminal_size=(80, 24))


def test_data_screen(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home, start_mode="data"), terminal_size=SIZE)


def test_train_new_job_form(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home, start_mode="train"), terminal_size=SIZE, press=["n"])


def test_chat_screen(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home, start_mode="chat"), terminal_size=SIZE)


def test_dialogue_screen(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home, start_mode="dialogue"), terminal_size=SIZE)


def test_evaluate_screen(snap_home, snap_compare):
    assert snap_compare(WorkbenchApp(snap_home, start_mode="evaluate"), terminal_size=SIZE)
