"""App-level background work. Workers import nothing from the app: they get what they need as arguments
and send their results up as messages (through `post`, which is thread-safe), handled by the app."""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message

from .format import one_line


class StarterProgress(Message):
    """A step of preparing the starter models ("importing SmolLM2...", "loading weights 40%")."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text


class StarterPrepared(Message):
    """Starter models are ready; `created` says what had to be made (empty if nothing); `done` is False
    after the first (small) one, when the chat model is still to come."""

    def __init__(self, created: list[str], done: bool = True):
        super().__init__()
        self.created = created
        self.done = done


class StarterFailed(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


def prepare_starter(ctx, post: Callable[[Message], object]) -> None:
    """Create the starter models of a fresh workspace, as `workbench init` does: tiny-neo (a few seconds),
    then the chat model smollm2 from its GGUF (about half a minute). Needs torch: never on the event loop."""
    from ..core.context import ensure_starter
    from ..core.models.starter import ensure_chat_starter

    try:
        post(StarterProgress("creating the starter model tiny-neo"))
        before = len(ctx.created)
        ensure_starter(ctx)
        post(StarterPrepared(ctx.created[before:], done=False))
        record, missing = ensure_chat_starter(ctx.ws, ctx.registry,
                                              progress=lambda text: post(StarterProgress(text.strip())))
    except Exception as error:  # noqa: BLE001 - reported, never raised into the app
        post(StarterFailed(one_line(error)))
        return
    created = [f"imported the chat model '{record.name}' ({record.params:,} parameters)"] if record else []
    post(StarterPrepared(created + ([missing] if missing else [])))
