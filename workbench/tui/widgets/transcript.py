"""A conversation: one bubble per turn, in the speaker's colour and side, growing as tokens stream in."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static


class Bubble(Static):
    """One turn. `append` adds streamed text; the text is never parsed as markup."""

    def __init__(self, speaker: str, text: str = "", label: str | None = None, **kwargs):
        super().__init__(Content(text), classes=f"bubble -{speaker}", **kwargs)
        self.speaker = speaker
        self.text = text
        self.border_title = label or speaker

    def append(self, piece: str) -> None:
        self.text += piece
        self.update(Content(self.text))

    def set_text(self, text: str) -> None:
        self.text = text
        self.update(Content(text))


class Transcript(VerticalScroll, can_focus=True):
    """The turns of a chat or dialogue, newest at the bottom (kept in view)."""

    def add(self, speaker: str, text: str = "", label: str | None = None) -> Bubble:
        bubble = Bubble(speaker, text, label)
        self.mount(bubble)
        self.call_after_refresh(self.scroll_end, animate=False)
        return bubble

    def follow(self) -> None:
        self.scroll_end(animate=False)

    def clear(self) -> None:
        self.remove_children()

    @property
    def bubbles(self) -> list[Bubble]:
        return list(self.query(Bubble))
