"""`workbench data add | get | list | show | rm`."""

from __future__ import annotations

from pathlib import Path

from .common import add_json_flag, command, context, emit, human_count, info, seed_value, table

BOOK_KEYS = ("alice", "poe", "gulliver")  # kept in step with core.data.BOOKS (core loads lazily)
INSTRUCTION_SUFFIXES = (".jsonl", ".json")


def register(subcommands) -> None:
    group = subcommands.add_parser("data", help="datasets: corpora and instruction sets")
    sub = group.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    add = command(sub, "add", cmd_add, "clean, split 80/10/10 and register a text or JSONL file")
    add.add_argument("name")
    add.add_argument("file")
    add.add_argument("--kind", choices=["text", "instructions"],
                     help="default: instructions for .jsonl/.json files, else text")
    add.add_argument("--seed", type=seed_value, default=0, help="shuffle seed of instruction records (recorded)")
    add_json_flag(add)

    get = command(sub, "get", cmd_get, "download a public-domain book from Project Gutenberg and register it")
    get.add_argument("book", choices=BOOK_KEYS)
    get.add_argument("--url", help="download from this URL instead (a mirror, a local server)")
    get.add_argument("--name", help="dataset name (default: the book's key)")
    add_json_flag(get)

    add_json_flag(command(sub, "list", cmd_list, "list registered datasets"))

    show = command(sub, "show", cmd_show, "show one dataset and its files")
    show.add_argument("name")
    show.add_argument("--preview", type=int, metavar="N",
                      help="instructions: print N records rendered with --model's chat template, trained "
                           "(assistant) tokens marked")
    show.add_argument("--model", help="with --preview: the model whose template renders the records")
    show.add_argument("--split", default="train", choices=["train", "val", "test"], help="with --preview")
    add_json_flag(show)

    rm = command(sub, "rm", cmd_rm, "unregister a dataset and delete its folder")
    rm.add_argument("name")
    add_json_flag(rm)


def describe(record) -> str:
    splits = " / ".join(f"{record.splits.get(s, 0):,}" for s in ("train", "val", "test"))
    unit = "tokens" if record.kind == "text" else "records"
    return (f"'{record.name}': {record.kind}, {record.chars:,} characters, {record.tokens:,} tokens, "
            f"train/val/test {splits} {unit}")


def cmd_add(args) -> int:
    from ..core.data import add_dataset

    kind = args.kind or ("instructions" if Path(args.file).suffix.lower() in INSTRUCTION_SUFFIXES else "text")
    ctx = context(args)
    record = add_dataset(ctx, args.name, args.file, kind=kind, seed=args.seed)
    say_encoding(record)
    emit(args, record, lambda r: f"registered {describe(r)}")
    return 0


def say_encoding(record) -> None:
    from ..core.data import dataset_meta

    encoding = dataset_meta(record).get("encoding")
    if encoding not in (None, "utf-8", "utf-8-sig"):
        info(f"read {record.source} as {encoding} (detected)")


def cmd_get(args) -> int:
    from ..core.data import BOOKS, get_book

    ctx = context(args)
    info(f"downloading {BOOKS[args.book][0]} from {args.url or BOOKS[args.book][1]}")
    record = get_book(ctx, args.book, url=args.url, name=args.name)
    emit(args, record, lambda r: f"registered {describe(r)}")
    return 0


def cmd_list(args) -> int:
    ctx = context(args, starter=False)
    datasets = ctx.registry.list_datasets()
    emit(args, datasets, lambda ds: table(
        [[d.name, d.kind, human_count(d.chars), human_count(d.tokens),
          "/".join(human_count(d.splits.get(s)) for s in ("train", "val", "test")),
          d.created_at[:16].replace("T", " ")] for d in ds],
        ["NAME", "KIND", "CHARS", "TOKENS", "TRAIN/VAL/TEST", "CREATED"]))
    return 0


def cmd_show(args) -> int:
    from dataclasses import asdict

    from ..core.data import dataset_meta

    ctx = context(args, starter=False)
    record = ctx.registry.get_dataset(args.name)
    if args.preview is not None:
        return show_preview(ctx, args)
    folder = Path(record.path)
    files = {str(p.relative_to(folder)): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {}

    def render(d: dict) -> str:
        lines = [f"{key}: {value}" for key, value in d.items() if key != "files"]
        lines += [f"file {name}: {size:,} bytes" for name, size in d["files"].items()]
        return "\n".join(lines)

    encoding = dataset_meta(record).get("encoding")
    emit(args, {**asdict(record), "encoding": encoding, "files": files}, render)
    return 0


def show_preview(ctx, args) -> int:
    """Records as instruction tuning renders them; trained text underlined on a terminal, else in ⟦ ⟧."""
    import sys

    from ..core.errors import WorkbenchError
    from ..core.instruct_preview import preview_records

    if not args.model:
        raise WorkbenchError("--preview needs --model MODEL (the template that renders the records)")
    preview = preview_records(ctx, args.name, args.model, args.preview, args.split)
    opening, closing = ("\x1b[4m", "\x1b[24m") if sys.stdout.isatty() else ("\u27e6", "\u27e7")

    def render(d: dict) -> str:
        out = [f"{len(d['records'])} record(s) of {d['dataset']}/{d['split']} rendered for {d['model']} "
               f"(template: {d['template_source']}); trained tokens marked {opening}like this{closing}"]
        for n, item in enumerate(d["records"], 1):
            out.append(f"--- record {n}: {item['tokens']} tokens, {item['trained_tokens']} trained")
            out.append("".join(f"{opening}{s['text']}{closing}" if s["trained"] else s["text"]
                               for s in item["segments"]))
        return "\n".join(out)

    emit(args, preview, render)
    return 0


def cmd_rm(args) -> int:
    from ..core.data import remove_dataset

    ctx = context(args, starter=False)
    remove_dataset(ctx, args.name)
    emit(args, {"removed": args.name}, lambda d: f"removed dataset '{d['removed']}' and its folder")
    return 0
