"""Cleaning and splitting: a text loses its Project Gutenberg boilerplate and extra blank lines and is cut
into three contiguous train/val/test blocks (80/10/10 of the characters, each cut moved to the nearest
paragraph or line break); instruction records are parsed, shuffled with the recorded seed and split by
count. Pure functions over strings and lists: no files, no registry.
"""

from __future__ import annotations

import random
import re

from .errors import WorkbenchError
from .instruction_formats import normalise_line_ends

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# ---------------------------------------------------------------- cleaning and splitting text


_GUTENBERG_START = re.compile(
    r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END_LINE = re.compile(r"\n[ \t]*End of (?:the )?Project Gutenberg.*\s*$", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){3,}")


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg licence header and footer (the `*** START/END OF ... ***` lines)."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = _GUTENBERG_END_LINE.sub("\n", text[:end.start()])
    return text


def clean_text(text: str) -> str:
    """Normalised line ends, no Gutenberg boilerplate, at most two blank lines in a row, trimmed ends."""
    text = strip_gutenberg(normalise_line_ends(text).lstrip("\ufeff"))
    text = _BLANK_RUN.sub("\n\n\n", text)
    return text.strip("\n").rstrip() + "\n"


def split_text(text: str) -> dict[str, str]:
    """Three contiguous blocks of about 80/10/10 % of the characters, cut at paragraph or line breaks."""
    length = len(text)
    window = max(1, length // 20)
    first = _cut_near(text, int(length * 0.8), window)
    second = _cut_near(text, int(length * 0.9), window)
    parts = dict(zip(SPLITS, (text[:first], text[first:second], text[second:])))
    parts = {split: part.strip("\n") + "\n" for split, part in parts.items()}
    empty = [split for split, part in parts.items() if not part.strip()]
    if empty or not 0 < first < second < length:
        raise WorkbenchError(f"the text is too short to split 80/10/10 ({length} characters)")
    return parts


def _cut_near(text: str, target: int, window: int) -> int:
    """A paragraph break nearest `target` within `window`, else a line break, else a space, else it."""
    lo, hi = max(1, target - window), min(len(text) - 1, target + window)
    for separator in ("\n\n", "\n", " "):
        found = _nearest(text, separator, target, lo, hi)
        if found is not None:
            return found + len(separator)
    return target


def _nearest(text: str, separator: str, target: int, lo: int, hi: int) -> int | None:
    after = text.find(separator, target, hi)
    before = text.rfind(separator, lo, target)
    candidates = [i for i in (before, after) if i >= 0]
    return min(candidates, key=lambda i: abs(i - target)) if candidates else None


# ---------------------------------------------------------------- instruction records


def parse_instructions(text: str, source: str) -> list[dict]:
    """Every record of an instruction file, normalised to {"messages": [...]} (see instruction_formats)."""
    from .instruction_formats import parse_records

    records = parse_records(text, source)
    if len(records) < len(SPLITS):
        raise WorkbenchError(f"{source} has {len(records)} instruction record(s); at least "
                             f"{len(SPLITS)} are needed for a train/val/test split")
    return records


def split_records(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Shuffle with `seed`, then 80/10/10 by count (at least one record in each split)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    count = len(order)
    n_val = max(1, round(count * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(count * SPLIT_FRACTIONS[2]))
    n_train = count - n_val - n_test
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, count)}
    return {split: [records[i] for i in order[a:b]] for split, (a, b) in bounds.items()}
