"""Multi-turn chat latency: time to a whole reply at each turn as the conversation grows.

A conversation of --turns user messages of --message-tokens tokens each (consecutive pieces of alice.txt),
rendered with the model's chat template, each reply --reply-tokens long (min = max new tokens, greedy).
Three sides answer the same conversation, interleaved turn by turn:
- workbench decoder with prefix reuse (the KV cache of the conversation so far is kept between turns),
- the same decoder encoding the whole history every turn (no reuse),
- transformers' `generate` (re-encodes the whole history every turn).
Printed: seconds per turn for each side, turn N / turn 2, and whether the replies with and without reuse
are identical. The conversation's replies are the reusing decoder's, so all sides see the same history.

    /work/venv/bin/python bench/chat_latency.py --model smollm2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from decode_throughput import CORPORA, add_model_args, load_for_bench  # noqa: E402


def messages_from_alice(tokenizer, count: int, tokens: int) -> list[str]:
    text = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    ids = tokenizer(text[: count * tokens * 8], add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[i * tokens:(i + 1) * tokens]) for i in range(count)]


def render(tokenizer, conversation: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--message-tokens", type=int, default=150)
    parser.add_argument("--reply-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    from workbench.core.decoding import Decoder, end_token_ids
    from workbench.core.generation import GenerationSettings

    folder, model, tokenizer = load_for_bench(args)
    end_ids = end_token_ids(model, tokenizer)
    settings = GenerationSettings(max_new_tokens=args.reply_tokens, min_new_tokens=args.reply_tokens)
    reusing, fresh = Decoder(model), Decoder(model)
    messages = messages_from_alice(tokenizer, args.turns, args.message_tokens)
    print(f"model: {folder.name} ({args.dtype}), {args.turns} turns of {args.message_tokens}-token messages, "
          f"{args.reply_tokens}-token replies; torch threads {torch.get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    fresh.generate(render(tokenizer, [{"role": "user", "content": "Hello"}]), settings, end_ids)  # warm-up
    conversation: list[dict] = []
    times: dict[str, list[float]] = {"decoder, prefix reuse": [], "decoder, full encode": [],
                                     "transformers generate": []}
    identical = True
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7}  " + "  ".join(f"{name:>22s}" for name in times))
    for turn, message in enumerate(messages, start=1):
        conversation.append({"role": "user", "content": message})
        prompt = render(tokenizer, conversation)
        started = time.perf_counter()
        reply = reusing.generate(prompt, settings, end_ids)
        times["decoder, prefix reuse"].append(time.perf_counter() - started)
        started = time.perf_counter()
        identical &= fresh.generate(prompt, settings, end_ids, reuse=False) == reply
        times["decoder, full encode"].append(time.perf_counter() - started)
        ids = torch.tensor([prompt])
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.reply_tokens,
                           min_new_tokens=args.reply_tokens, do_sample=False)
        times["transformers generate"].append(time.perf_counter() - started)
        print(f"{turn:4d} {len(prompt):7d} {reusing.reused:7d}  "
              + "  ".join(f"{values[-1]:21.2f}s" for values in times.values()), flush=True)
        conversation.append({"role": "assistant", "content": tokenizer.decode(reply, skip_special_tokens=True)})
    last = args.turns
    for name, values in times.items():
        print(f"{name:24s} turn {last} / turn 2: {values[-1] / values[1]:.2f}x   turn {last}: {values[-1]:.2f} s")
    print(f"turn {last} reply time, generate / decoder with reuse: "
          f"{times['transformers generate'][-1] / times['decoder, prefix reuse'][-1]:.2f}x")
    print(f"replies identical with and without reuse: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
