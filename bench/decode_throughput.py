"""Decode tokens/s at batch 1 (greedy): workbench's decoder against transformers' `generate` with its defaults.

Same model (bf16 unless --dtype), same chat prompt, same number of new tokens (min_new_tokens = max, so
neither stops early), runs interleaved (ours, generate, ours, ...) and the median of each printed with the
ratio. Also printed: the memory-bandwidth limit of decode = measured read bandwidth / bytes of weights
read per token (every matrix once; a tied embedding/head counts once), and each side's share of it; the
bandwidth is measured between runs (a 1 GiB fp32 sum on the same threads), so the limit moves with the
load of the machine. --int8 adds our int8 weight-only decode and its perplexity cost on alice.txt.

    /work/venv/bin/python bench/decode_throughput.py --model smollm2            # models/smollm2 of the workspace
    /work/venv/bin/python bench/decode_throughput.py --model /path/to/folder --new-tokens 64 --repeats 5 --int8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPORA = ROOT.parent / "shared" / "corpora"
QUESTION = "What did the Red Queen say to Alice? Tell me the whole story, in detail."


def model_folder(name: str, home: str | None) -> Path:
    """A folder path, or a registered model of the workspace; smollm2 is converted from its GGUF when absent."""
    if Path(name).is_dir():
        return Path(name)
    from workbench.core.context import open_workspace

    ctx = open_workspace(home, starter=False)
    try:
        return Path(ctx.registry.get_model(name).path)
    except Exception:  # noqa: BLE001 - not registered: the starter can be converted into a cache folder
        if name != "smollm2":
            raise SystemExit(f"no model '{name}' in {ctx.ws.root} and no such folder")
    from workbench.core.models.gguf import convert_gguf
    from workbench.core.models.starter import smollm2_gguf

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench-bench" / "smollm2"
    if not (folder / "config.json").exists():
        print(f"converting the SmolLM2 GGUF into {folder} ...", flush=True)
        convert_gguf(smollm2_gguf(), folder)
    return folder


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model/--home/--dtype/--threads, shared by the decode benches."""
    parser.add_argument("--model", default="smollm2", help="a folder, or a model of the --home workspace")
    parser.add_argument("--home", default=None)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=2)


def load_for_bench(args):
    """(folder, model, tokenizer) as the arguments say, the thread count set, transformers quiet."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.core.models import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    folder = model_folder(args.model, args.home)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True).eval()
    return folder, model, AutoTokenizer.from_pretrained(str(folder))


def chat_prompt_ids(tokenizer, text: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                 tokenize=False)
        return tokenizer(rendered, add_special_tokens=False)["input_ids"]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def read_bandwidth(buffer) -> float:
    """Bytes/s of one pass summing `buffer` (fp32, far larger than the caches)."""
    started = time.perf_counter()
    buffer.sum()
    return buffer.numel() * 4 / (time.perf_counter() - started)


def time_ours(decoder, prompt, settings, end_ids) -> float:
    started = time.perf_counter()
    out = decoder.generate(prompt, settings, end_ids, reuse=False)
    assert len(out) == settings.max_new_tokens
    return len(out) / (time.perf_counter() - started)


def time_generate(model, prompt, new_tokens) -> tuple[float, list[int]]:
    import torch

    ids = torch.tensor([prompt])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False)
    seconds = time.perf_counter() - started
    return new_tokens / seconds, out[0, len(prompt):].tolist()


def int8_perplexity_cost(decoders: list, tokenizer, tokens: int) -> list[float]:
    """Perplexity of each decoder on the start of alice.txt, fed one token at a time: exactly the path
    that decoding runs (the int8 decoder's single-token products use its int8 weights)."""
    import math

    import torch

    from workbench.core.evaluation.perplexity import encode_text, prefix_token_id

    text = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    ids = [prefix_token_id(tokenizer)] + encode_text(tokenizer, text[: tokens * 6])[:tokens]
    results = []
    for decoder in decoders:
        decoder.reset()
        total = 0.0
        with torch.inference_mode():
            logits = decoder.step.forward(ids[:1])
            for token in ids[1:]:
                total -= float(torch.log_softmax(logits, dim=-1)[token])
                logits = decoder.step.forward([token])
        decoder.reset()
        results.append(math.exp(total / (len(ids) - 1)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--int8", action="store_true", help="also time int8 weight-only decode (+ perplexity cost)")
    parser.add_argument("--ppl-tokens", type=int, default=512)
    args = parser.parse_args()

    import torch

    from workbench.core.decoding import Decoder, end_token_ids
    from workbench.core.generation import GenerationSettings

    folder, model, tokenizer = load_for_bench(args)
    prompt = chat_prompt_ids(tokenizer, QUESTION)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    end_ids = end_token_ids(model, tokenizer)
    sides = {"workbench decoder": Decoder(model)}
    if args.int8:
        sides["workbench decoder int8"] = Decoder(model, int8=True)
    ours = sides["workbench decoder"]
    weight_bytes = ours.step.weight_bytes()
    buffer = torch.ones(256 * 1024 * 1024)  # 1 GiB
    print(f"model: {folder.name} ({type(model).__name__}, {args.dtype}), {weight_bytes / 1e6:.0f} MB of matrices "
          f"read per token; decoder step: {ours.kind}; torch threads {torch.get_num_threads()}; prompt "
          f"{len(prompt)} tokens, {args.new_tokens} new tokens, {args.repeats} interleaved repeats; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    # warm-up (allocator, first-call kernel set-up), untimed; also the equality check
    short = GenerationSettings(max_new_tokens=min(16, args.new_tokens), min_new_tokens=min(16, args.new_tokens))
    same = ours.generate(prompt, short, end_ids, reuse=False) == time_generate(model, prompt, short.max_new_tokens)[1]
    for decoder in sides.values():
        decoder.generate(prompt, short, end_ids, reuse=False)
    rates: dict[str, list[float]] = {name: [] for name in [*sides, "transformers generate"]}
    bandwidth: list[float] = []
    for _ in range(args.repeats):
        bandwidth.append(read_bandwidth(buffer))
        for name, decoder in sides.items():
            rates[name].append(time_ours(decoder, prompt, settings, end_ids))
        rates["transformers generate"].append(time_generate(model, prompt, args.new_tokens)[0])
    bandwidth.append(read_bandwidth(buffer))
    bw = statistics.median(bandwidth)
    limit = bw / weight_bytes
    print(f"read bandwidth (median of {len(bandwidth)}): {bw / 1e9:.1f} GB/s "
          f"(runs: {', '.join(f'{b / 1e9:.1f}' for b in bandwidth)}) -> memory limit {limit:.1f} tokens/s "
          f"for {args.dtype} weights")
    peer = statistics.median(rates["transformers generate"])
    for name, values in rates.items():
        median = statistics.median(values)
        share = median * weight_bytes / bw
        print(f"{name:26s} {median:7.1f} tokens/s (runs: {', '.join(f'{v:.1f}' for v in values)})  "
              f"{share:6.1%} of the limit  {median / peer:5.2f}x generate")
    print(f"greedy tokens identical to generate (first {short.max_new_tokens}): {'yes' if same else 'NO'}")
    if args.int8:
        base, rounded = int8_perplexity_cost([sides["workbench decoder"], sides["workbench decoder int8"]],
                                             tokenizer, args.ppl_tokens)
        print(f"int8 quality cost: perplexity on alice.txt ({args.ppl_tokens} tokens, decoded one at a time) "
              f"{base:.4f} -> {rounded:.4f} ({(rounded - base) / base:+.2%})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
