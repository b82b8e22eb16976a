"""`workbench generate`, `workbench chat` and `workbench dialogue`."""

from __future__ import annotations

import sys

from .common import add_generation_flags, add_json_flag, command, context, emit, generation_settings, info, load


def register(subcommands) -> None:
    gen = command(subcommands, "generate", cmd_generate, "continue one or more prompts (batched)")
    gen.add_argument("model")
    gen.add_argument("prompts", nargs="+", metavar="PROMPT")
    add_generation_flags(gen)
    add_json_flag(gen)

    chat = command(subcommands, "chat", cmd_chat, "a line-by-line chat with a model (saved as a session)")
    chat.add_argument("model")
    add_generation_flags(chat)
    add_json_flag(chat)

    dia = command(subcommands, "dialogue", cmd_dialogue, "two models talk to each other")
    dia.add_argument("model_a")
    dia.add_argument("model_b")
    dia.add_argument("--turns", type=int, default=6)
    dia.add_argument("--opening", required=True, help="the line the conversation starts from")
    add_generation_flags(dia, max_new_tokens=48)
    add_json_flag(dia)


def cmd_generate(args) -> int:
    from ..core.generation import generate

    ctx = context(args)
    settings = generation_settings(args)
    loaded = load(ctx, args.model, args.device)
    outputs = generate(loaded, args.prompts, settings, warn=lambda m: info(f"warning: {m}"))
    data = {"model": args.model, "settings": settings.to_dict(),
            "outputs": [{"prompt": o.prompt, "text": o.text, "new_tokens": o.new_tokens} for o in outputs]}
    emit(args, data, lambda d: "\n---\n".join(o["prompt"] + o["text"] for o in d["outputs"]))
    return 0


def cmd_chat(args) -> int:
    from ..core.generation import chat_prompt, stream
    from ..core.sessions import Session, save_session

    ctx = context(args)
    settings = generation_settings(args)
    loaded = load(ctx, args.model, args.device)
    session = Session("chat", [args.model], settings=settings.to_dict())
    info(f"chatting with '{args.model}' (empty line or Ctrl-D to end; the session is saved as you go)")
    interactive = sys.stdin.isatty()
    while True:
        try:
            user_text = input("you> " if interactive else "")
        except EOFError:
            break
        if not user_text.strip():
            break
        history = [{"speaker": t.speaker, "text": t.text} for t in session.turns]
        prompt = chat_prompt(history, user_text, loaded.template)
        session.add("user", user_text)
        if not args.json:
            print(f"{args.model}> ", end="", flush=True)
        pieces = []
        for piece in stream(loaded, prompt, settings, warn=lambda m: info(f"warning: {m}")):
            pieces.append(piece)
            if not args.json:
                print(piece, end="", flush=True)
        if not args.json:
            print()
        session.add("model", "".join(pieces).strip(), model=args.model)
        save_session(ctx, session)
    if session.turns:
        record = save_session(ctx, session)
        info(f"session {record.id} saved to {record.path}")
    if args.json:
        emit(args, session.to_dict())
    return 0


def cmd_dialogue(args) -> int:
    from ..core.generation import run_dialogue
    from ..core.sessions import Session, save_session

    ctx = context(args)
    settings = generation_settings(args)
    models = (load(ctx, args.model_a, args.device), load(ctx, args.model_b, args.device))
    session = Session("dialogue", [args.model_a, args.model_b], settings=settings.to_dict())
    session.add("opening", args.opening.strip())
    if not args.json:
        print(f"[opening] {args.opening.strip()}\n", flush=True)
    for turn in run_dialogue(models, args.opening, args.turns, settings):
        session.add(turn.speaker, turn.text, model=turn.model)
        if not args.json:
            print(f"[{turn.speaker}: {turn.model}] {turn.text}\n", flush=True)
    record = save_session(ctx, session)
    info(f"session {record.id} saved to {record.path}")
    if args.json:
        data = {"models": [args.model_a, args.model_b],
                "turns": [{"speaker": t.speaker, "model": t.model, "text": t.text} for t in session.turns],
                "session": record.id}
        emit(args, data)
    return 0
