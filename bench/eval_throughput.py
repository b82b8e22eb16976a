"""Perplexity throughput: workbench's scorer against lm-evaluation-harness on the same model and text.

Both score the same document with the same windows (lm-eval's rolling log-likelihood: disjoint windows of
the model's context, the text prefixed with the BOS/EOS token), in fp32, in this process, one after the
other (the peer first, so our process-wide malloc setting does not help it; both get an untimed warm-up).
Printed: tokens/s of each, the NLL sums (they must agree to --tolerance relative, 1e-6 by default) and the speed-up. When
lm-eval is not installed, the peer is the Hugging Face "perplexity of fixed-length models" recipe
(labels=input_ids, full logits) on the same windows.

    .venv/bin/python bench/eval_throughput.py                      # GPT-2 4x256, context 1024, alice.txt
    .venv/bin/python bench/eval_throughput.py --arch gpt-neo --context 256 --tokens 20000
    .venv/bin/python bench/eval_throughput.py --model smollm2 --tokens 16384   # a real model (folder or name)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPORA = ROOT.parent / "shared" / "corpora"


def build_model(home: Path, arch: str, layers: int, hidden: int, heads: int, context: int):
    from workbench.core.context import open_workspace
    from workbench.core.models import ModelCache, ModelShape, create_model, quiet_transformers

    quiet_transformers()
    ctx = open_workspace(home, starter=False)
    create_model(ctx.ws, ctx.registry, "bench", arch, ModelShape(layers, hidden, heads, context), seed=0)
    return ModelCache().get(ctx.registry, "bench", device="cpu", dtype="fp32")


def load_real_model(name: str, home: str | None):
    """A real model in fp32 on the CPU: a folder, a model of the workspace, or smollm2 (see decode_throughput)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from decode_throughput import model_folder

    from workbench.core.models import LoadedModel, load_model_folder, quiet_transformers

    quiet_transformers()
    folder = model_folder(name, home)
    model, tokenizer, device = load_model_folder(folder, "cpu", "fp32")
    return LoadedModel(folder.name, model, tokenizer, device, int(model.config.max_position_embeddings))


def run_ours(loaded, text: str, batch_size: int, dtype: str = "fp32"):
    from workbench.core.evaluation.perplexity import perplexity

    result = perplexity(loaded, text, batch_size=batch_size, dtype=dtype)
    return result.nll_sum, result.tokens, result.seconds


def run_lm_eval(folder: str, text: str, batch_size: int):
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=folder, device="cpu", dtype=torch.float32, batch_size=batch_size)
    request = Instance(request_type="loglikelihood_rolling", doc={"text": text}, arguments=(text,), idx=0)
    warm = text[:2000]
    lm.loglikelihood_rolling([Instance(request_type="loglikelihood_rolling", doc={"text": warm}, arguments=(warm,),
                                       idx=0)], disable_tqdm=True)  # untimed warm-up, as for ours
    started = time.perf_counter()
    (loglik,) = lm.loglikelihood_rolling([request], disable_tqdm=True)
    seconds = time.perf_counter() - started
    del lm
    return -float(loglik), seconds


def run_hf_recipe(loaded, text: str):
    """The Hugging Face recipe: full logits via labels=..., one window at a time, same windows as ours."""
    import torch

    from workbench.core.evaluation.perplexity import encode_text, prefix_token_id
    from workbench.core.evaluation.windows import rolling_windows

    ids = [prefix_token_id(loaded.tokenizer)] + encode_text(loaded.tokenizer, text)
    started = time.perf_counter()
    total = 0.0
    with torch.no_grad():
        for w in rolling_windows(len(ids) - 1, loaded.context_length):
            inputs = torch.tensor([ids[w.start:w.end + 1]])
            logits = loaded.model(input_ids=inputs[:, :-1]).logits[0, -w.scored:].float()
            total += float(torch.nn.functional.cross_entropy(logits, inputs[0, -w.scored:], reduction="sum"))
    return total, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a real model (folder, workspace name or smollm2) instead "
                        "of a random --arch one; its own context")
    parser.add_argument("--home", default=None, help="the workspace for --model")
    parser.add_argument("--arch", default="gpt2", choices=["gpt2", "gpt-neo"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--text", default=str(CORPORA / "alice.txt"))
    parser.add_argument("--tokens", type=int, default=0, help="cut the text to about this many tokens (0 = all)")
    parser.add_argument("--batch-size", type=int, default=4, help="our windows per forward pass")
    parser.add_argument("--peer-batch-size", type=int, default=4, help="lm-eval's --batch_size")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="NLL agreement required (relative)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="skip timing our bf16 autocast path (timed by default)")
    args = parser.parse_args()

    import torch

    text = Path(args.text).read_bytes().decode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            loaded = load_real_model(args.model, args.home)
            args.arch, args.layers, args.hidden = loaded.name, loaded.model.config.num_hidden_layers, \
                loaded.model.config.hidden_size
            args.context = loaded.context_length
        else:
            loaded = build_model(Path(tmp), args.arch, args.layers, args.hidden, args.heads, args.context)
        if args.tokens:
            from workbench.core.evaluation.perplexity import encode_text

            ids = encode_text(loaded.tokenizer, text)[: args.tokens]
            text = loaded.tokenizer.decode(ids)
        params = sum(p.numel() for p in loaded.model.parameters())
        print(f"model: {args.arch} {args.layers}x{args.hidden}, context {args.context}, {params / 1e6:.1f} M "
              f"parameters; text: {Path(args.text).name}, {len(text):,} chars; torch threads "
              f"{torch.get_num_threads()}; fp32 on CPU")
        # the peer first: our scorer tunes glibc malloc for the whole process (training.speed.keep_freed_memory),
        # which would otherwise speed the peer up too; each side gets an untimed warm-up on a short text
        try:
            import lm_eval  # noqa: F401

            peer = f"lm-evaluation-harness {__import__('lm_eval').__version__} HFLM.loglikelihood_rolling " \
                   f"(batch_size={args.peer_batch_size})"
            peer_nll, peer_s = run_lm_eval(loaded.model.name_or_path, text, args.peer_batch_size)
        except ImportError:
            peer = "Hugging Face perplexity recipe (full logits, one window per pass)"
            run_hf_recipe(loaded, text[:2000])
            peer_nll, peer_s = run_hf_recipe(loaded, text)
        run_ours(loaded, text[:2000], args.batch_size)  # warm-up (allocator, kernels)
        ours_nll, tokens, ours_s = run_ours(loaded, text, args.batch_size)
        rel = abs(ours_nll - peer_nll) / abs(peer_nll)
        print(f"tokens scored: {tokens:,}")
        print(f"workbench (batch {args.batch_size}): {tokens / ours_s:10.1f} tokens/s  {ours_s:7.2f} s  "
              f"NLL {ours_nll:.6f}  perplexity {pow(2.718281828459045, ours_nll / tokens):.6f}")
        print(f"{peer}: {tokens / peer_s:10.1f} tokens/s  {peer_s:7.2f} s  NLL {peer_nll:.6f}  "
              f"perplexity {pow(2.718281828459045, peer_nll / tokens):.6f}")
        print(f"speed-up: {peer_s / ours_s:.2f}x   values equal to {rel:.2e} relative "
              f"({'OK' if rel <= args.tolerance else 'MISMATCH'} at {args.tolerance:g})")
        if args.bf16:
            bf_nll, _, bf_s = run_ours(loaded, text, args.batch_size, dtype="bf16")
            print(f"workbench bf16 autocast: {tokens / bf_s:10.1f} tokens/s  {bf_s:7.2f} s  NLL {bf_nll:.6f}  "
                  f"({abs(bf_nll - peer_nll) / peer_nll:.2e} relative from fp32; speed-up {peer_s / bf_s:.2f}x)")
    return 0 if rel <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
