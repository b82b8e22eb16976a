"""App-level background work. Workers import nothing from the app: they get what they need as arguments
and send their results up as messages (through `post`, which is thread-safe), handled by the app."""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message

from .format import one_line


class StarterPrepared(Message):
    """The starter models are ready; `created` says what had to be made (empty if nothing)."""

    def __init__(self, created: list[str]):
        super().__init__()
        self.created = created


class StarterFailed(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


def prepare_starter(ctx, post: Callable[[Message], object]) -> None:
    """Create the starter models of a fresh workspace (needs torch, so never on the event loop)."""
    from ..core.context import ensure_starter

    try:
        before = len(ctx.created)
        ensure_starter(ctx)
        created = ctx.created[before:]
    except Exception as error:  # noqa: BLE001 - reported, never raised into the app
        post(StarterFailed(one_line(error)))
        return
    post(StarterPrepared(created))
