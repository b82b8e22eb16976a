"""A small instruction set written for the instruct recipe: simple tasks whose answers are computed (so
every response is correct), in varied wordings. Deterministic for a seed; no outside data.

Families: arithmetic, comparisons, sorting, reversing and spelling words, counting letters, upper case,
opposites, plurals, days and months, capitals of well-known countries, and short definitions."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["garden", "river", "lantern", "pencil", "window", "forest", "candle", "basket", "mirror", "rabbit",
         "castle", "violin", "orange", "bridge", "pocket", "kettle", "ladder", "meadow", "shadow", "anchor",
         "button", "carpet", "dragon", "feather", "harbor", "island", "jacket", "lemon", "marble", "needle"]
OPPOSITES = {"hot": "cold", "big": "small", "early": "late", "happy": "sad", "light": "dark", "open": "closed",
             "fast": "slow", "full": "empty", "up": "down", "wet": "dry", "young": "old", "loud": "quiet",
             "hard": "soft", "strong": "weak", "rich": "poor", "high": "low", "near": "far", "first": "last",
             "push": "pull", "win": "lose"}
PLURALS = {"cat": "cats", "box": "boxes", "child": "children", "mouse": "mice", "city": "cities",
           "leaf": "leaves", "man": "men", "tooth": "teeth", "bus": "buses", "foot": "feet", "baby": "babies",
           "knife": "knives", "sheep": "sheep", "goose": "geese", "story": "stories", "dish": "dishes"}
CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin", "Japan": "Tokyo",
            "Egypt": "Cairo", "Canada": "Ottawa", "Portugal": "Lisbon", "Norway": "Oslo", "Greece": "Athens",
            "Ireland": "Dublin", "Poland": "Warsaw", "Austria": "Vienna", "Peru": "Lima", "Kenya": "Nairobi",
            "Sweden": "Stockholm", "Finland": "Helsinki", "Chile": "Santiago", "Cuba": "Havana",
            "Thailand": "Bangkok"}
DEFINITIONS = {"a triangle": "a shape with three straight sides", "a week": "a period of seven days",
               "a century": "a period of one hundred years", "a dozen": "a group of twelve",
               "a noun": "a word that names a person, place or thing", "ice": "water frozen solid",
               "a verb": "a word that names an action", "a square": "a shape with four equal sides",
               "an hour": "sixty minutes", "a library": "a place where books are kept to read or borrow"}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _arithmetic(r: random.Random) -> tuple[str, str]:
    a, b = r.randint(2, 40), r.randint(2, 40)
    op = r.choice(["plus", "minus", "times"])
    if op == "minus" and b > a:
        a, b = b, a
    value = a + b if op == "plus" else a - b if op == "minus" else a * b
    ask = r.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Work out {a} {op} {b}."])
    return ask.format(a=a, op=op, b=b), f"{a} {op} {b} is {value}."


def _compare(r: random.Random) -> tuple[str, str]:
    a, b = r.sample(range(1, 100), 2)
    if r.random() < 0.5:
        return f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."
    return f"Which is smaller, {a} or {b}?", f"{min(a, b)} is smaller than {max(a, b)}."


def _sort(r: random.Random) -> tuple[str, str]:
    numbers = r.sample(range(1, 60), r.randint(3, 5))
    if r.random() < 0.5:
        return (f"Sort these numbers from smallest to largest: {', '.join(map(str, numbers))}.",
                ", ".join(map(str, sorted(numbers))))
    return (f"Put these numbers in order from largest to smallest: {', '.join(map(str, numbers))}.",
            ", ".join(map(str, sorted(numbers, reverse=True))))


def _words(r: random.Random) -> tuple[str, str]:
    word = r.choice(WORDS)
    task = r.choice(["reverse", "spell", "count", "upper", "first"])
    if task == "reverse":
        return f"Write the word '{word}' backwards.", word[::-1]
    if task == "spell":
        return f"Spell the word '{word}' letter by letter.", "-".join(word)
    if task == "count":
        return f"How many letters are in the word '{word}'?", f"The word '{word}' has {len(word)} letters."
    if task == "upper":
        return f"Write '{word}' in capital letters.", word.upper()
    return f"What is the first letter of '{word}'?", f"The first letter of '{word}' is '{word[0]}'."


def _opposite(r: random.Random) -> tuple[str, str]:
    word, other = r.choice(sorted(OPPOSITES.items()))
    if r.random() < 0.5:
        word, other = other, word
    ask = r.choice(["What is the opposite of '{w}'?", "Give a word that means the opposite of '{w}'."])
    return ask.format(w=word), f"The opposite of '{word}' is '{other}'."


def _plural(r: random.Random) -> tuple[str, str]:
    word, plural = r.choice(sorted(PLURALS.items()))
    return f"What is the plural of '{word}'?", f"The plural of '{word}' is '{plural}'."


def _calendar(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.5:
        i = r.randrange(7)
        if r.random() < 0.5:
            return f"What day comes after {DAYS[i]}?", f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}."
        return f"What day comes before {DAYS[i]}?", f"{DAYS[i - 1]} comes before {DAYS[i]}."
    i = r.randrange(12)
    if r.random() < 0.5:
        return f"Which month comes after {MONTHS[i]}?", f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}."
    return f"Which month is number {i + 1} in the year?", f"{MONTHS[i]} is month number {i + 1}."


def _capital(r: random.Random) -> tuple[str, str]:
    country, city = r.choice(sorted(CAPITALS.items()))
    ask = r.choice(["What is the capital of {c}?", "Name the capital city of {c}."])
    return ask.format(c=country), f"The capital of {country} is {city}."


def _define(r: random.Random) -> tuple[str, str]:
    thing, meaning = r.choice(sorted(DEFINITIONS.items()))
    return f"What is {thing}?", f"{thing[0].upper()}{thing[1:]} is {meaning}."


def _number_word(r: random.Random) -> tuple[str, str]:
    n = r.randrange(len(NUMBER_WORDS))
    if r.random() < 0.5:
        return f"Write the number {n} as a word.", NUMBER_WORDS[n]
    return f"Which number is '{NUMBER_WORDS[n]}'?", f"'{NUMBER_WORDS[n]}' is {n}."


FAMILIES = [_arithmetic, _compare, _sort, _words, _opposite, _plural, _calendar, _capital, _define,
            _number_word]


def instruction_records(count: int = 240, seed: int = 0) -> list[dict]:
    """`count` distinct {"instruction", "response"} records, the families taken in turn (a family whose
    few distinct questions are used up gives its turn to the next)."""
    r = random.Random(seed)
    records: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(records) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError("the instruction templates cannot make that many distinct records")
        instruction, response = FAMILIES[attempts % len(FAMILIES)](r)
        if instruction in seen:
            continue
        seen.add(instruction)
        records.append({"instruction": instruction, "response": response})
    return records


def write_instructions(path: Path, count: int = 240, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in instruction_records(count, seed)), encoding="utf-8")
    return path
