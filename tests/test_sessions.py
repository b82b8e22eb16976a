"""Sessions: transcripts saved as JSON + Markdown and registered."""

import json

from workbench.core.sessions import Session, load_session, save_session


def test_session_saves_json_and_markdown_and_loads_back(ctx):
    session = Session("chat", ["tiny-neo"], settings={"max_new_tokens": 5})
    session.add("user", "Hello there")
    session.add("model", "General Kenobi", model="tiny-neo")
    record = save_session(ctx, session)
    path = ctx.ws.sessions_dir / f"{session.id}.json"
    assert json.loads(path.read_text())["turns"][1]["text"] == "General Kenobi"
    assert "**model (tiny-neo):**" in path.with_suffix(".md").read_text()
    assert record.turns == 2 and record.title == "Hello there"
    loaded = load_session(ctx, session.id)
    assert loaded.to_dict() == session.to_dict()
    assert [s.id for s in ctx.registry.list_sessions()] == [session.id]
