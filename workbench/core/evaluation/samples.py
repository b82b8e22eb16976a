"""Plain-language checks of generated text, so a score is never shown without saying when the text
behind it is empty or degenerate (a BLEU of 0 or an X-ratio of 1.0 often means exactly that)."""

from __future__ import annotations

from collections import Counter


def _blank_kind(text: str) -> str:
    if not text:
        return "nothing"
    return "newlines" if set(text) <= {"\n", "\r"} else "whitespace"


def blank_reply_note(text: str, tokens: int) -> str | None:
    """For a reply with no visible text: '64 newline tokens; try sampling'. None when there is text."""
    if text.strip():
        return None
    kind = _blank_kind(text)
    if kind == "nothing":
        return "the model ended its reply at once (no tokens); try sampling or another prompt"
    noun = "newline" if kind == "newlines" else "whitespace"
    return f"no visible text: {tokens} {noun} token{'s' if tokens != 1 else ''}; try sampling"


def sample_warnings(texts: list[str], what: str = "answers") -> list[str]:
    """Warnings about a set of generated texts: all or some empty, or the same word over and over."""
    if not texts:
        return []
    count = len(texts)
    empty = [t for t in texts if not t.strip()]
    warnings = []
    if len(empty) == count:
        kinds = {_blank_kind(t) for t in empty}
        detail = ("the model only produced newlines" if kinds == {"newlines"}
                  else "the model produced no text" if kinds == {"nothing"}
                  else "the model only produced whitespace")
        warnings.append(f"all {count} {what} are empty: {detail}")
    elif empty:
        warnings.append(f"{len(empty)} of {count} {what} are empty")
    repeated = []
    for text in texts:
        words = text.split()
        if len(words) >= 4:
            word, n = Counter(words).most_common(1)[0]
            if n / len(words) >= 0.8:
                repeated.append(word)
    if repeated:
        shown = ", ".join(repr(w[:12]) for w in sorted(set(repeated))[:3])
        warnings.append(f"{len(repeated)} of {count} {what} repeat one word over and over ({shown})")
    return warnings
