"""What every export's verification shares: the probe text, perplexity of a loaded model, folder sizes."""

from __future__ import annotations

from pathlib import Path

from ..errors import WorkbenchError

# A public-domain paragraph (Lewis Carroll, 1865) scored when no --verify-text is given.
PROBE_TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: "
    "once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations "
    "in it, 'and what is the use of a book,' thought Alice 'without pictures or conversations?' So she was "
    "considering in her own mind (as well as she could, for the hot day made her feel very sleepy and stupid), "
    "whether the pleasure of making a daisy-chain would be worth the trouble of getting up and picking the "
    "daisies, when suddenly a White Rabbit with pink eyes ran close by her. There was nothing so very remarkable "
    "in that; nor did Alice think it so very much out of the way to hear the Rabbit say to itself, 'Oh dear! "
    "Oh dear! I shall be late!' (when she thought it over afterwards, it occurred to her that she ought to have "
    "wondered at this, but at the time it all seemed quite natural); but when the Rabbit actually took a watch "
    "out of its waistcoat-pocket, and looked at it, and then hurried on, Alice started to her feet, for it "
    "flashed across her mind that she had never before seen a rabbit with either a waistcoat-pocket, or a watch "
    "to take out of it, and burning with curiosity, she ran across the field after it, and fortunately was just "
    "in time to see it pop down a large rabbit-hole under the hedge."
)


def verify_text(path: str | None, max_chars: int = 20_000) -> str:
    if not path:
        return PROBE_TEXT
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")[:max_chars]
    except (OSError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"cannot read --verify-text {path}: {error}") from None
    if not text.strip():
        raise WorkbenchError(f"--verify-text {path} is empty")
    return text


def perplexity_of(model, tokenizer, text: str, context: int = 1024) -> float:
    """Perplexity (DESIGN.md's definition) of an in-memory model, in windows of at most `context` tokens."""
    from ..evaluation.perplexity import perplexity
    from ..models import LoadedModel

    limit = getattr(model.config, "max_position_embeddings", None) or context
    loaded = LoadedModel("export-check", model, tokenizer, "cpu", min(context, int(limit)))
    return perplexity(loaded, text, batch_size=4).perplexity


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(folder).glob(pattern) if p.is_file())


def relative_change(new: float, old: float) -> float:
    return (new - old) / old if old else float("inf")
