"""Chat and dialogue prompting: a conversation becomes the exact prompt a model is given.

Chat models (a tokenizer chat template) see the whole history rendered by their template with a
generation prompt, a system prompt first. Plain language models continue the conversation as running
text (turns separated by blank lines). Either way, when the history does not fit the context beside
max_new_tokens, the oldest turns are dropped (never the system prompt), and only when the newest user
message alone is too long is the prompt cut from the left.

In a dialogue each side sees the conversation from its own side: its own lines as the assistant's,
the other side's as the user's, and a system prompt naming its persona and its partner's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import WorkbenchError
from .generation import GenerationSettings, encode_text, generate, prompt_budget
from .models import LoadedModel

DEFAULT_PERSONAS = ("Alice", "Edgar")


@dataclass
class ChatPrompt:
    """The exact prompt text and ids for the next reply, and what was left out to fit the context."""

    text: str
    ids: list[int]
    dropped_turns: int = 0
    truncated: bool = False
    templated: bool = False


def is_chat_model(loaded: LoadedModel) -> bool:
    fmt = getattr(loaded, "chat_format", None)
    return bool(fmt is not None and fmt.is_chat)


def render_prompt(loaded: LoadedModel, messages: list[dict]) -> str:
    """The prompt text for the next assistant reply to `messages` (system/user/assistant)."""
    if is_chat_model(loaded):
        from .templates import render

        return render(loaded.tokenizer, messages, loaded.chat_format.template, add_generation_prompt=True)
    texts = [m["content"] for m in messages if m["content"].strip()]
    return "\n\n".join(texts) + "\n\n"


def build_prompt(loaded: LoadedModel, messages: list[dict], settings: GenerationSettings,
                 warn: Callable[[str], None] | None = None) -> ChatPrompt:
    """The prompt for a reply to `messages`, fitted into the context: the oldest turns after the system
    prompt go first, one at a time, and a conversation never starts with an assistant turn."""
    budget = prompt_budget(loaded, settings)
    templated = is_chat_model(loaded)
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    dropped = 0
    while True:
        text = render_prompt(loaded, system + turns)
        ids, truncated = encode_text(loaded, text, templated), False
        if len(ids) <= budget or len(turns) <= 1:
            break
        turns = turns[1:]
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] == "assistant":
            turns, dropped = turns[1:], dropped + 1
    if len(ids) > budget:
        ids, truncated = ids[-budget:], True
        if warn:
            warn(f"the last message is longer than the context: kept its last {budget} tokens")
    elif dropped and warn:
        warn(f"dropped the {dropped} oldest turn(s) to fit the context")
    return ChatPrompt(text, ids, dropped, truncated, templated)


def chat_messages(turns: list[dict], user_text: str, system: str = "") -> list[dict]:
    """Messages from a chat session's turns ({"speaker": "user"|"model", "text"}) and the new message."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for turn in turns:
        role = "user" if turn["speaker"] == "user" else "assistant"
        messages.append({"role": role, "content": turn["text"]})
    messages.append({"role": "user", "content": user_text})
    return messages


def chat_reply(loaded: LoadedModel, prompt: ChatPrompt, settings: GenerationSettings,
               stop: threading.Event | None = None) -> Iterator[str]:
    """The reply's text, piece by piece as it is generated; it ends on any of the model's end tokens."""
    from .generation import stream_ids

    settings = GenerationSettings.from_dict({**settings.to_dict(), "num_return_sequences": 1}).validate()
    yield from stream_ids(loaded, prompt.ids, settings, stop)


# ---------------------------------------------------------------- dialogue


@dataclass
class DialogueTurn:
    speaker: str  # "A" | "B" | "opening"
    model: str | None
    text: str
    persona: str = ""
    prompt: str = ""  # the exact prompt text the model was given


def persona_system_prompt(me: str, other: str) -> str:
    return (f"You are {me}, in a conversation with {other}. Speak only as {me}: reply to {other}'s last "
            "line in a few sentences, in your own voice.")


def dialogue_messages(transcript: list[DialogueTurn], side: str, personas: tuple[str, str]) -> list[dict]:
    """The conversation as `side` ("A" or "B") sees it: its own lines as the assistant's, the other's as
    the user's. The opening counts as B's line (A answers it first); a side whose view would open with
    its own line gets that line in its system prompt, since many templates require a user turn first."""
    me, other = (personas[0], personas[1]) if side == "A" else (personas[1], personas[0])
    system = persona_system_prompt(me, other)
    messages: list[dict] = []
    for turn in transcript:
        own = turn.speaker == side or (turn.speaker == "opening" and side == "B")
        if own and not messages:
            system += f' You opened the conversation by saying: "{turn.text}"'
            continue
        messages.append({"role": "assistant" if own else "user", "content": turn.text})
    return [{"role": "system", "content": system}, *messages]


def plain_dialogue_prompt(transcript: list[DialogueTurn]) -> str:
    return "\n\n".join(t.text for t in transcript) + "\n\n"


def clean_reply(text: str) -> str:
    """A turn is the model's first paragraph: stop where it starts a new one, as a speaker would."""
    text = text.strip()
    return text.split("\n\n")[0].strip() or text


def run_dialogue(models: tuple[LoadedModel, LoadedModel], opening: str, turns: int,
                 settings: GenerationSettings, stop: threading.Event | None = None,
                 warn: Callable[[str], None] | None = None,
                 personas: tuple[str, str] = DEFAULT_PERSONAS) -> Iterator[DialogueTurn]:
    """Two models take turns from an opening line (said by B's persona, answered first by A). A chat
    model sees the conversation from its own side through its template; a plain model continues the
    transcript. Yields each turn as it is produced."""
    if turns < 1:
        raise WorkbenchError(f"--turns must be at least 1 (got {turns})")
    if not opening.strip():
        raise WorkbenchError("the opening line is empty")
    personas = tuple(p.strip() or d for p, d in zip(personas, DEFAULT_PERSONAS))  # type: ignore[assignment]
    settings = GenerationSettings.from_dict({**settings.to_dict(), "num_return_sequences": 1}).validate()
    transcript = [DialogueTurn("opening", None, opening.strip(), personas[1])]
    for index in range(turns):
        if stop is not None and stop.is_set():
            return
        side = "AB"[index % 2]
        loaded = models[index % 2]
        turn_settings = settings
        if settings.seed is not None:  # different but reproducible draws per turn
            turn_settings = GenerationSettings.from_dict({**settings.to_dict(), "seed": settings.seed + index})
        if is_chat_model(loaded):
            prompt = build_prompt(loaded, dialogue_messages(transcript, side, personas), turn_settings, warn)
            text = "".join(chat_reply(loaded, prompt, turn_settings, stop)).strip()
            prompt_text = prompt.text
        else:  # a plain model rambles on: its turn is its first paragraph
            prompt_text = plain_dialogue_prompt(transcript)
            text = clean_reply(generate(loaded, [prompt_text], turn_settings, stop=stop)[0].text)
        if stop is not None and stop.is_set():  # stopped mid-turn: drop the cut-off reply
            return
        turn = DialogueTurn(side, loaded.name, text or "...", personas["AB".index(side)], prompt_text)
        transcript.append(turn)
        yield turn

