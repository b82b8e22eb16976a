"""GPU smoke check of the workbench's CUDA code paths: training, generation, perplexity, throughput.

Prints one line per check (PASS / FAIL / WARN / INFO, with figures); exits 1 when any check FAILs.
  fastloss-*  the training loss module (chunked LM head, torch.compile'd CE kernel, GPT-Neo SDPA patch) vs the
              model's own loss and gradients, in fp32 and under bf16 autocast
  train-*     the real loop (training.loop.train) at --precision auto (bf16 autocast on CUDA): full fine-tune
              of a tiny GPT-Neo (fp32 base, GPT-2 tokenizer, local attention), LoRA and kl-letter on a tiny
              Llama (bf16 base, SmolLM2 tokenizer): finite falling loss, checkpoints, resume from the mid-run
              checkpoint repeating the run, the result reloading with plain transformers (+ peft), finite logits
  gen-*       generation.generate / stream (batch-1 decoder: LlamaStep, ModelStep) vs model.generate(do_sample=
              False) token for token, in the auto dtype (bf16 on CUDA: a divergence is a WARN giving its first
              position) and in fp32 (must agree); --int8-decode on the device: INFO or WARN
  ppl-*       evaluation.perplexity (fp32, bf16) and evaluate() (as `workbench eval` runs it) vs transformers'
              own loss summed over the same windows
  bench-*     tokens/s of our trainer vs Hugging Face Trainer (bf16=True where ours autocasts), random
              SmolLM2-135M-shaped Llama (30 x 576, 9/3 heads, vocab 49,152, tied), seq 256: full and LoRA
  env/compile versions and device; at the end whether torch.compile built the loss kernel

    python3 bench/gpu_check.py --corpora .gpu_data                        # CUDA: ~2-4 minutes on an H100
    python bench/gpu_check.py --device cpu --quick --corpora .gpu_data    # CPU validation, small sizes
--corpora holds alice.txt, poe.txt and optionally smollm2-tokenizer/; --no-bench skips the throughput part;
WORKBENCH_COMPILE=0 keeps the loss kernel eager (no torch.compile). The device run: bench/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, __version__ as peft_version, get_peft_model  # noqa: E402
from transformers import (AutoModelForCausalLM, GPTNeoConfig, LlamaConfig, PrinterCallback, Trainer,  # noqa: E402
                          TrainerCallback, TrainingArguments, __version__ as transformers_version)

from workbench.core import data  # noqa: E402
from workbench.core.context import open_workspace  # noqa: E402
from workbench.core.decoding import decoder_for  # noqa: E402
from workbench.core.evaluation.perplexity import encode_text, perplexity, prefix_token_id  # noqa: E402
from workbench.core.evaluation.service import EvalRequest, evaluate  # noqa: E402
from workbench.core.evaluation.windows import rolling_windows  # noqa: E402
from workbench.core.generation import (GenerationSettings, encode_prompt, end_ids, generate,  # noqa: E402
                                       prompt_budget, stream)
from workbench.core.models import (LoadedModel, ModelCache, add_model, load_model_folder,  # noqa: E402
                                   load_tokenizer, quiet_transformers, resolve_device, write_gpt2_tokenizer_files)
from workbench.core.training import TrainConfig, fast_loss  # noqa: E402
from workbench.core.training.checkpoints import list_checkpoints  # noqa: E402
from workbench.core.training.loop import train  # noqa: E402
from workbench.core.training.objectives import CausalBlocks, make_loss_module  # noqa: E402
from workbench.core.training.precision import resolve_precision  # noqa: E402

FAILS: list[str] = []
ONLY: list[str] = []  # --only: name prefixes of the checks to run (all when empty)
PROMPT = "Alice was beginning to get very tired of sitting by her sister on the bank"


def report(status: str, name: str, text: str) -> None:
    FAILS.extend([name] if status == "FAIL" else [])
    print(f"{status:4s} {name:16s} {text}", flush=True)


def check(name: str, fn, *args, **kwargs) -> None:
    if ONLY and not any(name.startswith(prefix) for prefix in ONLY):
        return
    began = time.perf_counter()
    try:
        status, text = fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - every failure is reported, the other checks still run
        print(traceback.format_exc()[-3000:], flush=True)
        status, text = "FAIL", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    report(status, name, f"{text} [{time.perf_counter() - began:.1f} s]")


def peak_gib(dev: str, reset: bool = False) -> float:
    value = torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else 0.0
    if reset and dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    return value


def rel(a, b) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-12)


def save_model(ctx, name: str, config, tok_dir: Path | None, dtype=torch.float32, std: float | None = None):
    """A random model from `config`, saved in `dtype` with tokenizer files and registered as `name`."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if std:  # larger weights than the default init: decisive logits, fewer greedy near-ties
        with torch.no_grad():
            for param in (p for p in model.parameters() if p.dim() == 2):
                param.normal_(0.0, std)
    folder = ctx.ws.home / "src" / name
    model.to(dtype).save_pretrained(str(folder), safe_serialization=True)
    if tok_dir is None:
        write_gpt2_tokenizer_files(folder)
    else:
        for item in tok_dir.iterdir():
            shutil.copy2(item, folder / item.name)
    return add_model(ctx.ws, ctx.registry, name, str(folder), copy=False)[0]


def neo_config(S):
    return GPTNeoConfig(num_layers=S.layers, hidden_size=S.hidden, num_heads=S.heads, max_position_embeddings=S.ctx,
                        vocab_size=50257, window_size=S.seq // 4, bos_token_id=50256, eos_token_id=50256,
                        attention_types=[[["global", "local"], S.layers // 2]])


def llama_config(vocab: int, special: dict, layers: int, hidden: int, ffn: int, heads: int, kv: int, ctx: int):
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=ctx,
                       tie_word_embeddings=True, rms_norm_eps=1e-5, **special)


def fastloss_check(ctx, name: str, dev: str, S):
    record = ctx.registry.get_model(name)
    ref_model, model = (AutoModelForCausalLM.from_pretrained(record.path, dtype=torch.float32).to(dev) for _ in "ab")
    model.config.use_cache = False
    vocab = ref_model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (4, S.seq), generator=torch.Generator().manual_seed(1)).to(dev)
    n = ids.numel() - ids.shape[0]
    ref = ref_model(input_ids=ids, labels=ids).loss * n
    ref.backward()
    module = make_loss_module(model, "causal", fast=True).to(dev)
    ours, count = module(ids, ids, None)
    ours.backward()
    param, ref_p = next((k, p) for k, p in ref_model.named_parameters() if ".0." in k and p.dim() == 2)
    grad = dict(model.named_parameters())[param].grad
    grad_diff = float((grad - ref_p.grad).norm() / ref_p.grad.norm())
    d32 = rel(ours.detach(), ref.detach())
    ok = int(count) == n and d32 < 1e-4 and grad_diff < 1e-3
    text = f"fp32 loss rel diff {d32:.1e}, grad ({param}) {grad_diff:.1e}"
    autocast = resolve_precision("auto", dev)
    if autocast is not None:
        with torch.no_grad(), torch.autocast(dev.split(":")[0], dtype=autocast):
            ours16, _ = module(ids, ids, None)
            ref16 = ref_model(input_ids=ids, labels=ids).loss * n
        d16, d16_ref = rel(ours16, ref.detach()), rel(ref16, ref.detach())
        ok = ok and d16 < 2e-2
        text += f"; bf16 autocast rel diff {d16:.1e} (HF's own bf16 loss: {d16_ref:.1e})"
    notes = ", ".join(module.speedups) or "no module patches"
    return ("PASS" if ok else "FAIL"), f"{text}; {notes}; chunked head: {module.fast}"


def train_check(ctx, label: str, dev: str, S, **settings):
    n, half = S.steps, S.steps // 2
    values = dict(out=f"{label}-out", steps=n, batch=S.batch, seq=S.seq, warmup=2, schedule="cosine",
                  eval_every=half, save_every=half, precision="auto", device=dev, dataset="alice",
                  compile="on" if S.compile_body else "auto")
    values.update(settings)
    run_dir, first, second = ctx.ws.jobs_dir / label, [], []
    train(ctx, TrainConfig(**values), run_dir, on_metrics=first.extend, progress=False, register=False)
    losses = [r["loss"] for r in first if r["split"] == "train"]
    steps = [s for s, _ in list_checkpoints(run_dir)]
    shutil.rmtree(list_checkpoints(run_dir)[-1][1])  # resume from the mid-run checkpoint
    result = train(ctx, TrainConfig(**values), run_dir, on_metrics=second.extend, progress=False, resume=True)
    resumed = [r["loss"] for r in second if r["split"] == "train"]
    resume_diff = max((rel(a, b) for a, b in zip(resumed, losses[half:])), default=math.inf)
    start, end = statistics.mean(losses[: max(1, n // 3)]), statistics.mean(losses[-max(1, n // 3):])
    finite = all(math.isfinite(x) for x in losses + resumed)
    record = result.model
    if record.adapter:
        base = AutoModelForCausalLM.from_pretrained(ctx.registry.get_model(record.parent).path, dtype="auto")
        model = PeftModel.from_pretrained(base, record.path)
    else:
        model = AutoModelForCausalLM.from_pretrained(record.path, dtype="auto")
    model.to(dev).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.randint(0, 1000, (2, 16), device=dev)).logits
    reload_ok = bool(torch.isfinite(logits).all())
    tolerance = 0.0 if dev == "cpu" and not S.autocast else 2e-2
    drop = 0.2 if values.get("objective") == "kl-letter" else 0.005 if values.get("method") == "lora" else 0.03
    ok = (finite and end < start * (1 - drop) and steps == [half, n] and len(resumed) == n - half
          and resume_diff <= tolerance and reload_ok and result.steps_done == n)
    return ("PASS" if ok else "FAIL"), (
        f"loss {start:.3f}->{end:.3f} (first/last third of {n} steps), checkpoints {steps}, resume from "
        f"{half}: max rel diff {resume_diff:.1e} (tol {tolerance:g}), reload "
        f"({'adapter' if record.adapter else 'full'}, {next(model.parameters()).dtype}) finite={reload_ok}")


def gen_check(ctx, name: str, dev: str, S):
    settings = GenerationSettings(max_new_tokens=S.new, min_new_tokens=S.new)
    lines, status = [], "PASS"
    for dtype in (None, "fp32"):
        loaded = ModelCache().get(ctx.registry, name, device=dev, dtype=dtype)
        ours = generate(loaded, [PROMPT], settings)[0].token_ids
        ids, _ = encode_prompt(loaded, PROMPT, prompt_budget(loaded, settings))
        prompt = torch.tensor([ids], device=loaded.device)
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                        **settings.generate_kwargs(loaded.tokenizer, end_ids(loaded)))
        hf, label = out[0, len(ids):].tolist(), str(loaded.model.dtype).replace("torch.", "")
        if ours == hf:
            lines.append(f"{label}: {len(ours)} tokens equal")
        else:
            at = next((i for i, (a, b) in enumerate(zip(ours, hf)) if a != b), min(len(ours), len(hf)))
            lines.append(f"{label}: first divergence at token {at} (ours {ours[at:at + 3]}, HF {hf[at:at + 3]})")
            status = "FAIL" if dtype == "fp32" else ("WARN" if status == "PASS" else status)
        if dtype is None:
            lines[-1] += f" [{decoder_for(loaded).kind}]"
            if "".join(stream(loaded, PROMPT, settings)) != loaded.tokenizer.decode(ours, skip_special_tokens=True):
                lines.append("stream() text differs from generate()")
                status = "FAIL"
    return status, "; ".join(lines)


def int8_check(ctx, name: str, dev: str, S):
    loaded = ModelCache().get(ctx.registry, name, device=dev)
    plain = generate(loaded, [PROMPT], GenerationSettings(max_new_tokens=S.new, min_new_tokens=S.new))[0].token_ids
    try:  # a CPU-first option: reported, never a FAIL
        int8 = generate(loaded, [PROMPT], GenerationSettings(max_new_tokens=S.new, min_new_tokens=S.new,
                                                             int8_decode=True))[0].token_ids
    except Exception as error:  # noqa: BLE001
        return "WARN", f"--int8-decode fails on {dev}: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
    same = next((i for i, (a, b) in enumerate(zip(plain, int8)) if a != b), len(plain))
    return "INFO", f"--int8-decode runs on {dev}; its first {same} of {len(plain)} greedy tokens equal the unquantised"


def direct_nll(model, ids: list[int], context: int, dev: str) -> float:
    """Summed NLL over the project's windows with transformers' own loss (labels -100 outside the scored)."""
    total = 0.0
    with torch.no_grad():
        for w in rolling_windows(len(ids) - 1, context):
            seq = torch.tensor([ids[w.start:w.end + 1]], device=dev)
            labels = seq.clone()
            labels[0, : seq.shape[1] - w.scored] = -100
            total += float(model(input_ids=seq, labels=labels).loss.double()) * w.scored
    return total


def ppl_check(ctx, name: str, dev: str, S):
    record = ctx.registry.get_model(name)
    text = data.read_split_text(ctx, "poe", "test")[: S.ppl_chars]
    model, tok, device = load_model_folder(record.path, dev, "fp32")
    loaded = LoadedModel(name, model, tok, device, record.context_length)
    context = record.context_length // 2  # the direct computation feeds context + 1 tokens
    ids = [prefix_token_id(tok)] + encode_text(tok, text)
    ref = direct_nll(model, ids, context, device)
    r32 = perplexity(loaded, text, context=context, batch_size=8, dtype="fp32")
    r16 = perplexity(loaded, text, context=context, batch_size=8, dtype="bf16")
    d32, d16 = rel(r32.nll_sum, ref), rel(r16.nll_sum, ref)
    cache, path = ModelCache(), ctx.ws.home / "ppl.txt"
    path.write_text(text, encoding="utf-8", newline="")  # evaluate() reads the exact same text back
    request = EvalRequest(metrics=["ppl"], file=str(path), context=context, device=dev, dtype="fp32", fresh=True)
    service = evaluate(ctx, [name], request, cache=cache)["results"][0]["details"]["ppl"]
    weights = next(iter(cache._models.values())).model.dtype
    dsvc = rel(service["nll_sum"], ref)
    ok = r32.tokens == len(ids) - 1 == service["tokens"] and d32 < 1e-4 and d16 < 2e-2 and dsvc < 2e-2
    status, note = ("PASS" if ok else "FAIL"), ""
    if ok and weights != torch.float32:
        status, note = "WARN", f" (evaluate() with dtype=fp32 loaded {weights} weights: eval's fp32 is not fp32)"
    return status, (f"ppl {math.exp(ref / (len(ids) - 1)):.1f} over {len(ids) - 1} tokens, ctx {context}: "
                    f"perplexity() fp32 rel diff {d32:.1e}, bf16 {d16:.1e}; evaluate() {dsvc:.1e}{note}; "
                    f"{r32.tokens_per_s:,.0f} tok/s fp32")


def bench_check(ctx, dev: str, S, method: str, blocks):
    bf16 = resolve_precision("auto", dev) is not None
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    lr, steps, warm = (5e-5 if method == "full" else 5e-4), S.bench_steps, S.bench_steps // 3

    def tok_s(stamps):  # steps warm+1 .. n-1: the loop's last step also validates (eval_every=0 or not)
        return S.bench_batch * S.bench_seq * (len(stamps) - 2 - warm) / (stamps[-2] - stamps[warm])

    stamps, ours_losses, hf_stamps = [], [], []

    def on_metrics(rows):
        sync()
        stamps.append(time.perf_counter())
        ours_losses.extend(r["loss"] for r in rows if r["split"] == "train")

    config = TrainConfig(base_model="smol", dataset="alice", out=f"bench-{method}", steps=steps, batch=S.bench_batch,
                         seq=S.bench_seq, lr=lr, warmup=3, schedule="cosine", eval_every=0, precision="auto",
                         device=dev, method=method, lora_r=8, lora_alpha=16, lora_dropout=0.0)
    peak_gib(dev, reset=True)
    train(ctx, config, ctx.ws.jobs_dir / f"bench-{method}", on_metrics=on_metrics, progress=False, register=False,
          compile_body=S.compile_body)
    ours, ours_mem = tok_s(stamps), peak_gib(dev, reset=True)
    shutil.rmtree(ctx.ws.jobs_dir / f"bench-{method}", ignore_errors=True)
    gc.collect()

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync()
            hf_stamps.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(ctx.registry.get_model("smol").path, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(ctx.ws.home / f"hf-{method}"), max_steps=steps,
                             per_device_train_batch_size=S.bench_batch, learning_rate=lr, warmup_steps=3,
                             lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
                             save_strategy="no", eval_strategy="no", report_to="none", use_cpu=dev == "cpu",
                             dataloader_num_workers=0, bf16=bf16, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=blocks, callbacks=[Stamp()])
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True would print every log row
    trainer.train()
    hf, hf_mem = tok_s(hf_stamps), peak_gib(dev)
    hf_losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    del trainer, model
    gc.collect()
    finite = all(math.isfinite(x) for x in ours_losses + hf_losses)
    return ("INFO" if finite else "FAIL"), (
        f"ours {ours:,.0f} tok/s vs HF Trainer (bf16={bf16}) {hf:,.0f} tok/s = {ours / hf:.2f}x "
        f"(steps {warm + 2}-{steps - 1}, batch {S.bench_batch} x seq {S.bench_seq}); loss@{steps} ours "
        f"{ours_losses[-1]:.3f} HF {hf_losses[-1] if hf_losses else float('nan'):.3f}; peak GPU memory "
        f"ours {ours_mem:.1f} GiB, HF {hf_mem:.1f} GiB")


def sizes(quick: bool, dev: str) -> SimpleNamespace:
    """Tiny models (layers, hidden, heads, kv heads, context), training and generation lengths, bench shape."""
    quick_sizes = dict(layers=2, hidden=64, heads=4, kv=2, ctx=128, seq=64, batch=4, steps=12, new=16,
                       ppl_chars=6000, bench_steps=6, bench_batch=2, bench_seq=64, bench_shape=(2, 192, 512, 3, 1))
    full_sizes = dict(layers=4, hidden=256, heads=8, kv=4, ctx=512, seq=256, batch=8, steps=40, new=48,
                      ppl_chars=10**9, bench_steps=30, bench_batch=16, bench_seq=256, bench_shape=(30, 576, 1536, 9, 3))
    autocast = resolve_precision("auto", dev) is not None
    return SimpleNamespace(**(quick_sizes if quick else full_sizes), autocast=autocast)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU validation)")
    parser.add_argument("--corpora", default=".gpu_data", help="folder with alice.txt, poe.txt [smollm2-tokenizer/]")
    parser.add_argument("--no-bench", action="store_true", help="skip the trainer throughput comparison")
    parser.add_argument("--bench-batch", type=int, default=None, help="batch of the throughput runs (default 16)")
    parser.add_argument("--compile-body", action="store_true",
                        help="our training and throughput runs torch.compile the body (TrainConfig compile=on)")
    parser.add_argument("--only", default=None, help="run only the checks whose names start with these (comma list)")
    args = parser.parse_args()
    began = time.perf_counter()
    quiet_transformers()
    dev = resolve_device(args.device)
    S = sizes(args.quick, dev)
    S.compile_body = args.compile_body
    S.bench_batch = args.bench_batch or S.bench_batch
    ONLY.extend((args.only or "").split(",") if args.only else [])
    if dev == "cpu":  # validation runs: one thread (tiny matmuls on a shared machine stall on thread hand-offs)
        torch.set_num_threads(1)
    corpora = Path(args.corpora)
    name = (f"{torch.cuda.get_device_name(dev)}, capability {torch.cuda.get_device_capability(dev)}"
            if dev.startswith("cuda") else "cpu")
    report("INFO", "env", f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
           f"{transformers_version}, peft {peft_version}, python {sys.version.split()[0]}; device {dev}: "
           f"{name}; autocast bf16: {S.autocast}; WORKBENCH_COMPILE={os.environ.get('WORKBENCH_COMPILE', '1')}")
    home = Path(tempfile.mkdtemp(prefix="wb-gpu-check-"))
    ctx = open_workspace(home, starter=False)
    try:
        for book in ("alice", "poe"):
            data.add_dataset(ctx, book, corpora / f"{book}.txt")
        tok_dir = corpora / "smollm2-tokenizer"
        tok_dir = tok_dir if (tok_dir / "tokenizer.json").is_file() else None
        vocab, special = 50257, {"bos_token_id": 50256, "eos_token_id": 50256}  # the GPT-2 tokenizer's
        if tok_dir is None:
            report("WARN", "tokenizer", f"{corpora}/smollm2-tokenizer missing: Llama models use the GPT-2 tokenizer")
        else:
            tok = load_tokenizer(tok_dir)
            vocab, special = len(tok), {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("bos", "eos", "pad")}
        small = (S.layers, S.hidden, 4 * S.hidden, S.heads, S.kv, S.ctx)
        save_model(ctx, "neo", neo_config(S), None)
        save_model(ctx, "llama", llama_config(vocab, special, *small), tok_dir, dtype=torch.bfloat16)
        save_model(ctx, "neo-gen", neo_config(S), None, std=0.2)
        save_model(ctx, "llama-gen", llama_config(vocab, special, *small), tok_dir, std=0.2)
        for label, fn, model in (("fastloss-neo", fastloss_check, "neo"), ("fastloss-llama", fastloss_check, "llama"),
                                 ("gen-llama", gen_check, "llama-gen"), ("gen-neo", gen_check, "neo-gen"),
                                 ("gen-int8", int8_check, "llama-gen"), ("ppl-neo", ppl_check, "neo"),
                                 ("ppl-llama", ppl_check, "llama")):
            check(label, fn, ctx, model, dev, S)
        check("train-full-neo", train_check, ctx, "full", dev, S, base_model="neo", lr=3e-3)
        check("train-lora-llama", train_check, ctx, "lora", dev, S, base_model="llama", method="lora", lr=2e-2,
              lora_targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        check("train-kl-llama", train_check, ctx, "kl", dev, S, base_model="llama", objective="kl-letter",
              dataset=None, lr=3e-3)
        if not args.no_bench:
            layers, hidden, ffn, heads, kv = S.bench_shape
            save_model(ctx, "smol", llama_config(vocab, special, layers, hidden, ffn, heads, kv, 2048), tok_dir,
                       dtype=torch.bfloat16)
            ids = data.split_token_array(ctx, "alice", "train", load_tokenizer(ctx.registry.get_model("smol").path))
            source = CausalBlocks(ids, S.bench_seq, "random", 0)
            blocks = [{"input_ids": row, "labels": row} for i in range(S.bench_steps)
                      for row in source.batch(i, S.bench_batch)["input_ids"]]
            for method in ("full", "lora"):
                check(f"bench-{method}", bench_check, ctx, dev, S, method, blocks)
        report("INFO", "compile", f"torch.compile of the CE loss kernel: enabled={fast_loss.compile_enabled()}, "
               f"built={fast_loss._STATE['compiled'] is not None}, failed={fast_loss._STATE['failed']}; "
               f"the transformer body {'compiled (--compile-body)' if S.compile_body else 'not compiled (the default)'}")
    finally:
        ctx.registry.close()
        shutil.rmtree(home, ignore_errors=True)
    verdict = f"FAILED: {', '.join(FAILS)}" if FAILS else "all checks passed"
    print(f"gpu_check: {verdict} in {time.perf_counter() - began:.0f} s", flush=True)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
