"""`workbench generate`, `workbench chat` and `workbench dialogue`."""

from __future__ import annotations

import json
import sys

from .common import add_generation_flags, add_json_flag, command, context, emit, generation_settings, info, load, text_arg


def register(subcommands) -> None:
    gen = command(subcommands, "generate", cmd_generate, "continue one or more prompts (batched)")
    gen.add_argument("model")
    gen.add_argument("prompts", nargs="+", metavar="PROMPT")
    add_generation_flags(gen)
    add_json_flag(gen)

    chat = command(subcommands, "chat", cmd_chat, "chat with a model (saved as a session); from a pipe, "
                   "one user message per line")
    chat.add_argument("model")
    chat.add_argument("--system", default="", help="the system prompt (chat models)")
    add_generation_flags(chat)
    add_json_flag(chat)

    dia = command(subcommands, "dialogue", cmd_dialogue, "two models talk to each other")
    dia.add_argument("model_a")
    dia.add_argument("model_b")
    dia.add_argument("--turns", type=int, default=6)
    dia.add_argument("--opening", required=True, help="the line the conversation starts from (said by B)")
    dia.add_argument("--persona-a", default="Alice", help="who model A speaks as (default Alice)")
    dia.add_argument("--persona-b", default="Edgar", help="who model B speaks as (default Edgar)")
    add_generation_flags(dia, max_new_tokens=48)
    add_json_flag(dia)


def cmd_generate(args) -> int:
    from ..core.generation import generate

    ctx = context(args)
    settings = generation_settings(args)
    loaded = load(ctx, args.model, args.device)
    prompts = [text_arg(p, "the prompt") for p in args.prompts]
    outputs = generate(loaded, prompts, settings, warn=lambda m: info(f"warning: {m}"))
    data = {"model": args.model, "settings": settings.to_dict(),
            "outputs": [{"prompt": o.prompt, "text": o.text, "new_tokens": o.new_tokens} for o in outputs]}
    emit(args, data, lambda d: "\n---\n".join(o["prompt"] + o["text"] for o in d["outputs"]))
    return 0


def cmd_chat(args) -> int:
    """A REPL on a terminal; from a pipe one user message per line (--json: one JSON object per reply)."""
    from ..core.sessions import Session, save_session

    ctx = context(args)
    settings = generation_settings(args)
    loaded = load(ctx, args.model, args.device)
    session = Session("chat", [args.model], settings=settings.to_dict(), system=args.system or "")
    interactive = sys.stdin.isatty()
    info(f"chatting with '{args.model}': {loaded.chat_format.describe()}"
         + (" (empty line or Ctrl-D to end; the session is saved as you go)" if interactive else ""))
    sys.stdin.reconfigure(errors="surrogateescape")  # bad bytes reach text_arg, which replaces them
    while True:
        try:
            user_text = text_arg(input("you> " if interactive else ""), "the input")
        except EOFError:
            break
        if not user_text.strip():
            if interactive:
                break
            continue  # a blank line in piped input is no message
        text = _chat_turn(ctx, args, loaded, session, user_text, settings)
        if args.json:
            print(json.dumps({"session": session.id, "model": args.model, "text": text}, ensure_ascii=False),
                  flush=True)
    if session.turns:
        record = save_session(ctx, session)
        info(f"session {record.id} saved to {record.path}")
    return 0


def _chat_turn(ctx, args, loaded, session, user_text: str, settings) -> str:
    """One exchange: the prompt from the whole history, the streamed reply, both saved in the session."""
    from ..core.chat import build_prompt, chat_messages, chat_reply
    from ..core.sessions import save_session

    messages = chat_messages(session.chat_history(), user_text, session.system)
    prompt = build_prompt(loaded, messages, settings, warn=lambda m: info(f"warning: {m}"))
    session.add("user", user_text)
    if not args.json:
        print(f"{args.model}> ", end="", flush=True)
    pieces = []
    for piece in chat_reply(loaded, prompt, settings):
        pieces.append(piece)
        if not args.json:
            print(piece, end="", flush=True)
    if not args.json:
        print()
    text = "".join(pieces).strip()
    session.add("model", text, model=args.model, prompt=prompt.text)
    save_session(ctx, session)
    return text


def cmd_dialogue(args) -> int:
    from ..core.chat import run_dialogue
    from ..core.sessions import Session, save_session

    ctx = context(args)
    settings = generation_settings(args)
    models = (load(ctx, args.model_a, args.device), load(ctx, args.model_b, args.device))
    args.opening = text_arg(args.opening, "the opening")
    personas = (args.persona_a, args.persona_b)
    session = Session("dialogue", [args.model_a, args.model_b], settings=settings.to_dict(),
                      personas=list(personas))
    session.add("opening", args.opening.strip(), persona=args.persona_b)
    if not args.json:
        print(f"[{args.persona_b}, opening] {args.opening.strip()}\n", flush=True)
    for turn in run_dialogue(models, args.opening, args.turns, settings, personas=personas,
                             warn=lambda m: info(f"warning: {m}")):
        session.add(turn.speaker, turn.text, model=turn.model, prompt=turn.prompt, persona=turn.persona)
        if not args.json:
            print(f"[{turn.persona} ({turn.speaker}: {turn.model})] {turn.text}\n", flush=True)
    record = save_session(ctx, session)
    info(f"session {record.id} saved to {record.path}")
    if args.json:
        data = {"models": [args.model_a, args.model_b], "personas": list(personas),
                "turns": [{"speaker": t.speaker, "persona": t.persona, "model": t.model, "text": t.text}
                          for t in session.turns],
                "session": record.id}
        emit(args, data)
    return 0
