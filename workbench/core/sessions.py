"""Chat and dialogue transcripts: sessions/<id>.json (+ a Markdown rendering), registered in the registry."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from .context import Context
from .errors import WorkbenchError
from .registry import SessionRecord, now_iso


@dataclass
class Turn:
    speaker: str  # chat: "user" | "model"; dialogue: "opening" | "A" | "B"
    text: str
    model: str | None = None
    created_at: str = field(default_factory=now_iso)
    prompt: str | None = None  # a model turn: the exact prompt text the model was given
    persona: str | None = None  # a dialogue turn: the name its side speaks as


@dataclass
class Session:
    kind: str  # chat | dialogue
    models: list[str]
    turns: list[Turn] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    title: str = ""
    id: str = field(default_factory=lambda: new_session_id())
    created_at: str = field(default_factory=now_iso)
    system: str = ""  # chat: the system prompt
    personas: list[str] = field(default_factory=list)  # dialogue: the names of sides A and B

    def add(self, speaker: str, text: str, model: str | None = None, prompt: str | None = None,
            persona: str | None = None) -> Turn:
        turn = Turn(speaker, text, model, prompt=prompt, persona=persona)
        self.turns.append(turn)
        if not self.title and speaker in ("user", "opening"):
            self.title = text.strip().splitlines()[0][:60] if text.strip() else ""
        return turn

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Session":
        known = Turn.__dataclass_fields__
        turns = [Turn(**{k: v for k, v in t.items() if k in known}) for t in data.get("turns", [])]
        return cls(kind=data["kind"], models=list(data["models"]), turns=turns,
                   settings=data.get("settings", {}), title=data.get("title", ""), id=data["id"],
                   created_at=data.get("created_at", now_iso()), system=data.get("system", ""),
                   personas=list(data.get("personas", [])))

    def chat_history(self) -> list[dict]:
        """The chat turns as {"speaker", "text"} (what chat.chat_messages takes)."""
        return [{"speaker": t.speaker, "text": t.text} for t in self.turns if t.speaker in ("user", "model")]


def new_session_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def to_markdown(session: Session) -> str:
    lines = [f"# {session.kind.title()}: {session.title or session.id}", "",
             f"- models: {', '.join(session.models)}", f"- started: {session.created_at}"]
    if session.settings:
        lines.append("- settings: " + ", ".join(f"{k}={v}" for k, v in session.settings.items()))
    if session.system:
        lines.append(f"- system prompt: {session.system}")
    if session.personas:
        lines.append("- personas: " + ", ".join(f"{s} = {p}" for s, p in zip("AB", session.personas)))
    lines.append("")
    for turn in session.turns:
        who = turn.persona or turn.speaker
        who = who if not turn.model else f"{who} ({turn.model})"
        lines += [f"**{who}:**", "", turn.text, ""]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)


def save_session(ctx: Context, session: Session) -> SessionRecord:
    """Write the JSON and Markdown files, then register (or update) the session."""
    path = ctx.ws.sessions_dir / f"{session.id}.json"
    ctx.ws.sessions_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(session.to_dict(), indent=2, ensure_ascii=False))
    _write_atomically(path.with_suffix(".md"), to_markdown(session))
    record = SessionRecord(id=session.id, kind=session.kind, models=session.models, path=str(path),
                           title=session.title, turns=len(session.turns), created_at=session.created_at)
    return ctx.registry.save_session(record)


def load_session(ctx: Context, session_id: str) -> Session:
    record = ctx.registry.get_session(session_id)
    try:
        return Session.from_dict(json.loads(Path(record.path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise WorkbenchError(f"session {session_id}: cannot read {record.path} ({error})") from None
