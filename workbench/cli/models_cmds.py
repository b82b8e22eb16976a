"""`workbench models new | add | list | show | rm | rename`."""

from __future__ import annotations

from .common import add_json_flag, command, context, emit, human_count, info, seed_value, table


def register(subcommands) -> None:
    group = subcommands.add_parser("models", help="the model registry")
    sub = group.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    new = command(sub, "new", cmd_new, "create a fresh model from a config")
    new.add_argument("name")
    new.add_argument("--arch", default="gpt-neo", metavar="ARCH",
                     help="any causal LM model type of transformers, e.g. gpt-neo, gpt2, llama, qwen3, gemma2, "
                     "phi3 (default gpt-neo)")
    new.add_argument("--layers", type=int, default=2)
    new.add_argument("--hidden", type=int, default=128)
    new.add_argument("--heads", type=int, default=4)
    new.add_argument("--context", type=int, default=256)
    new.add_argument("--seed", type=seed_value, default=0)
    new.add_argument("--tokenizer", metavar="MODEL",
                     help="copy this registered model's tokenizer, chat template and generation config "
                     "(default: the GPT-2 tokenizer)")
    add_json_flag(new)

    add = command(sub, "add", cmd_add, "import a model folder, a GGUF file, or a hub id (from the local "
                  "Hugging Face cache when it is there)")
    add.add_argument("name")
    add.add_argument("source", help="a local model folder, a FILE.gguf, a models--org--name cache folder, or a "
                     "hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")
    add.add_argument("--reference", action="store_true", help="register a local folder in place instead of copying it")
    add_json_flag(add)

    add_json_flag(command(sub, "list", cmd_list, "list registered models"))

    show = command(sub, "show", cmd_show, "show one model with its lineage and evaluations")
    show.add_argument("name")
    add_json_flag(show)

    rm = command(sub, "rm", cmd_rm, "remove a model from the registry")
    rm.add_argument("name")
    rm.add_argument("--delete-files", action="store_true", help="also delete its folder")
    add_json_flag(rm)

    rename = command(sub, "rename", cmd_rename, "rename a model (and its folder)")
    rename.add_argument("name")
    rename.add_argument("new_name")
    add_json_flag(rename)


def cmd_new(args) -> int:
    from ..core.models import ModelShape, create_model

    ctx = context(args)
    shape = ModelShape(args.layers, args.hidden, args.heads, args.context)
    record = create_model(ctx.ws, ctx.registry, args.name, args.arch, shape, seed=args.seed,
                          tokenizer=args.tokenizer)
    emit(args, record, lambda r: f"created '{r.name}' ({r.arch}, {r.params:,} parameters) in {r.path}")
    return 0


def cmd_add(args) -> int:
    from ..core.models import add_model

    ctx = context(args)
    record, how = add_model(ctx.ws, ctx.registry, args.name, args.source, copy=not args.reference, progress=info)
    info(how)
    emit(args, {**vars_of(record), "how": how},
         lambda r: f"registered '{r['name']}' ({r['arch']}, {r['params']:,} parameters)")
    return 0


def vars_of(record) -> dict:
    from dataclasses import asdict

    return asdict(record)


def cmd_list(args) -> int:
    ctx = context(args)
    models = ctx.registry.list_models()
    emit(args, models, lambda ms: table(
        [[m.name, m.arch + (" (adapter)" if m.adapter else ""), human_count(m.params), m.context_length,
          m.source, m.parent or "-", m.created_at[:16].replace("T", " ")] for m in ms],
        ["NAME", "ARCH", "PARAMS", "CONTEXT", "SOURCE", "PARENT", "CREATED"]))
    return 0


def model_details(ctx, name: str) -> dict:
    record = ctx.registry.get_model(name)
    lineage, parent = [], record.parent
    while parent:
        lineage.append(parent)
        found = ctx.registry.find_model(parent)
        parent = found.parent if found else None
    evaluations = [
        {"metric": e.metric, "value": e.value, "target": e.target, "created_at": e.created_at}
        for e in ctx.registry.evaluations(model=name)
    ]
    return {**vars_of(record), **chat_mode(record.path), "lineage": lineage,
            "children": [c.name for c in ctx.registry.children_of(name)], "evaluations": evaluations}


def chat_mode(folder: str) -> dict:
    """How the model is prompted: chat (and where its template comes from) or plain continuation."""
    from ..core.templates import describe_mode, template_source

    source = template_source(folder)
    return {"chat_mode": describe_mode(source), "chat_template": source}


def cmd_show(args) -> int:
    ctx = context(args)
    details = model_details(ctx, args.name)

    def render(d: dict) -> str:
        lines = [f"{k}: {v}" for k, v in d.items() if k not in ("evaluations", "meta")]
        for key, value in d["meta"].items():
            lines.append(f"meta.{key}: {value}")
        for e in d["evaluations"]:
            lines.append(f"eval {e['metric']} on {e['target']}: {e['value']:.4g} ({e['created_at']})")
        return "\n".join(lines)

    emit(args, details, render)
    return 0


def cmd_rm(args) -> int:
    from ..core.models import remove_model

    ctx = context(args)
    message = remove_model(ctx.registry, args.name, delete_files=args.delete_files)
    emit(args, {"removed": args.name, "message": message}, lambda d: d["message"])
    return 0


def cmd_rename(args) -> int:
    from ..core.models import rename_model

    ctx = context(args)
    record = rename_model(ctx.ws, ctx.registry, args.name, args.new_name)
    emit(args, record, lambda r: f"renamed '{args.name}' to '{r.name}'")
    return 0
