"""Helpers every command module shares: opening the workspace, printing JSON or text, settings flags."""

from __future__ import annotations

from ..core.units import human_count  # noqa: F401 - re-exported for command modules

import argparse
import json
import math
import sys
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

from ..core.context import Context, open_workspace


# ---------------------------------------------------------------- argument types: bad values are usage errors


def seed_value(text: str) -> int:
    value = _integer(text, "a seed")
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"a seed is an integer from 0 to 2**64 - 1 (got {text})")
    return value


def job_id_value(text: str) -> int:
    value = _integer(text, "a job id")
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"a job id is a positive integer (got {text})")
    return value


def positive_int(text: str) -> int:
    value = _integer(text, "a count")
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return value


def seconds_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds is a number (got {text!r})") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a number of seconds is finite and not negative (got {text})")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} is an integer (got {text!r})") from None


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print data as JSON on stdout")


def add_home_flag(parser: argparse.ArgumentParser) -> None:
    # Accepted after the command too (`workbench models list --home DIR`).
    parser.add_argument("--home", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def command(subcommands, name: str, handler: Callable, help: str, **kwargs) -> argparse.ArgumentParser:
    parser = subcommands.add_parser(name, help=help, description=help, **kwargs)
    add_home_flag(parser)
    parser.set_defaults(handler=handler)
    return parser


def context(args: argparse.Namespace, starter: bool = True) -> Context:
    """The workspace, initialised on first use; what that created is said on stderr."""
    ctx = open_workspace(getattr(args, "home", None), starter=starter)
    for line in ctx.created:
        info(line)
    return ctx


def text_arg(text: str, what: str) -> str:
    """Text from argv or stdin with bytes that are not UTF-8 (Python keeps them as lone surrogates,
    which no tokenizer takes): decoded with U+FFFD replacement characters, and said so."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        info(f"warning: {what} held bytes that are not UTF-8; replaced them with U+FFFD")
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def info(message: str) -> None:
    """Diagnostics go to stderr so that stdout stays data-only with --json."""
    print(message, file=sys.stderr)


def to_data(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    return value


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str] | None = None) -> None:
    """Print `data` as JSON with --json, else as text (`render(data)`, or the JSON when none)."""
    if getattr(args, "json", False) or render is None:
        print(json.dumps(to_data(data), indent=2, ensure_ascii=False))
    else:
        text = render(data)
        if text:
            print(text)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain aligned text table (rich is overkill for pipes and logs)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)



def add_generation_flags(parser: argparse.ArgumentParser, max_new_tokens: int = 64) -> None:
    """Every generation setting as a flag (see core.generation.GenerationSettings)."""
    group = parser.add_argument_group("generation settings")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    group.add_argument("--min-new-tokens", type=int, default=0, help="hold end tokens back until this many")
    group.add_argument("--sample", dest="do_sample", action="store_true", help="sample instead of greedy")
    group.add_argument("--temperature", type=float, default=1.0)
    group.add_argument("--top-k", type=int, default=50)
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--repetition-penalty", type=float, default=1.0)
    group.add_argument("--num-return-sequences", type=int, default=1)
    group.add_argument("--seed", type=seed_value, default=None)
    group.add_argument("--int8-decode", action="store_true",
                       help="int8 weight-only decode (Llama-layout models; faster, small quality cost)")
    group.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")


def generation_settings(args: argparse.Namespace):
    from ..core.generation import GenerationSettings

    return GenerationSettings(
        max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens, do_sample=args.do_sample,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        num_return_sequences=args.num_return_sequences, seed=args.seed, int8_decode=args.int8_decode,
    ).validate()


def load(ctx: Context, name: str, device: str | None = None):
    """A loaded model (checks the name before paying for torch)."""
    from ..core.models import ModelCache

    ctx.registry.get_model(name)
    return ModelCache(max_models=2).get(ctx.registry, name, device=device)

