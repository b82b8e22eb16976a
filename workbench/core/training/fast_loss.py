"""Language-model loss straight from the final hidden states, never materialising the full logits.

The LM head of a small GPT with the GPT-2 vocabulary (50,257 columns) is most of the FLOPs and almost all
of the memory traffic of a training step: batch 8 x seq 256 of fp32 logits is 411 MB, written by the
matmul, read by the softmax, written again as its gradient and read by two more matmuls. Here the tokens
are processed in chunks: each chunk's logits are computed in the compute dtype (bf16 under autocast),
soft-maxed in fp32, and turned into the chunk's gradients right away (the cross-entropy gradient is
softmax - one_hot), so the backward pass only scales the stored gradients by the incoming grad. Peak
extra memory is one chunk of logits; nothing is recomputed.

The per-chunk softmax / gradient kernel is compiled with torch.compile (two fused passes instead of ~8;
about 5x faster on CPU) when a C compiler is there; WORKBENCH_COMPILE=0 or any compile failure falls back
to the identical eager code.

`linear_cross_entropy(hidden, weight, targets, bias=, scale=, softcap=)` returns the summed cross-entropy
(fp32); the caller divides by the number of scored tokens it wants to average over (across micro-batches
and ranks). bias, scale and softcap cover the heads of the families we train (a head bias, Cohere-style
logit scaling, Gemma 2's final soft-capping); head.py says which applies to a model.
"""

from __future__ import annotations

import os
import sys

import torch

CHUNK_ELEMENTS = 2**27  # logits elements per chunk: 2,560 tokens of a 50,257-token vocabulary
DEFAULT_CHUNK = None  # = default_chunk(vocab)
_STATE = {"compiled": None, "failed": False}


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


def _ce_chunk(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 0.0):
    """(summed cross-entropy, d loss / d logits in the logits' dtype) for one chunk; softmax in fp32.

    softcap > 0: the model's logits are softcap * tanh(logits / softcap) (Gemma 2's final soft-capping);
    the gradient goes through the tanh. Written as plain tensor code so torch.compile can fuse it into two
    passes over the chunk (the eager version makes ~8 passes over a (chunk, vocab) array, as costly as the
    LM-head matmuls themselves)."""
    x = logits if logits.dtype == torch.float64 else logits.float()
    if softcap:
        t = torch.tanh(x / softcap)
        x = t * softcap
    peak = x.amax(1, keepdim=True)
    e = (x - peak).exp()
    norm = e.sum(1, keepdim=True)
    picked = x.gather(1, targets[:, None])
    loss = (peak + norm.log() - picked).sum()
    cols = torch.arange(x.shape[1], device=x.device)
    d = e / norm - (cols[None, :] == targets[:, None]).to(x.dtype)
    if softcap:
        d = d * (1 - t * t)
    return loss, d.to(logits.dtype)


def _ce_chunk_f64(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 0.0):
    if softcap:
        return _ce_chunk(logits, targets, softcap)
    logp = torch.log_softmax(logits, dim=1)
    loss = -logp.gather(1, targets[:, None]).sum()
    d = logp.exp_()
    d[torch.arange(len(targets), device=d.device), targets] -= 1.0
    return loss, d


def compile_enabled() -> bool:
    """torch.compile for the softmax kernel: on unless WORKBENCH_COMPILE=0 or a compile failed before."""
    return os.environ.get("WORKBENCH_COMPILE", "1") != "0" and not _STATE["failed"]


def _kernel(logits: torch.Tensor, use_compile: bool):
    if logits.dtype == torch.float64:
        return _ce_chunk_f64
    if not (use_compile and compile_enabled() and logits.device.type in ("cpu", "cuda")):
        return _ce_chunk
    if _STATE["compiled"] is None:
        _STATE["compiled"] = torch.compile(_ce_chunk, dynamic=True)
    return _STATE["compiled"]


def _run_kernel(logits, targets, use_compile: bool, softcap: float = 0.0):
    kernel = _kernel(logits, use_compile)
    if kernel is _ce_chunk or kernel is _ce_chunk_f64:
        return kernel(logits, targets, softcap)
    try:
        return kernel(logits, targets, softcap)
    except Exception as error:  # noqa: BLE001 - no C compiler, unsupported platform...: stay correct, go eager
        _STATE["failed"] = True
        print(f"note: torch.compile of the loss kernel failed ({type(error).__name__}); using the eager kernel",
              file=sys.stderr)
        return _ce_chunk(logits, targets, softcap)


def _no_grad_loss(logits: torch.Tensor, targets: torch.Tensor, softcap: float, acc: torch.dtype) -> torch.Tensor:
    x = logits.to(acc)
    if softcap:
        x = torch.tanh(x / softcap) * softcap
    return (torch.logsumexp(x, 1) - x.gather(1, targets[:, None]).squeeze(1)).sum()


class _LinearCrossEntropy(torch.autograd.Function):
    """logits = (hidden * scale) @ weight.T + bias * scale, optionally soft-capped; summed CE over rows."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, compute_dtype, use_compile, scale, softcap):  # noqa: D401
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        n = hidden.shape[0]
        w = weight.to(compute_dtype)
        b = bias.to(compute_dtype) * scale if bias is not None else None
        acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        grad_w_t = None  # (D, V): h.T @ d is ~1.6x faster than d.T @ h on CPU; transposed once at the end
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            h = hidden[start:stop].to(compute_dtype)
            if scale != 1.0:  # scaling the (c, D) inputs is cheaper than the (c, V) logits
                h = h * scale
            y = targets[start:stop]
            logits = h @ w.t()  # (c, V) in the compute dtype: the only big buffer
            if b is not None:
                logits += b
            if not (need_h or need_w or need_b):
                total += _no_grad_loss(logits, y, softcap, acc)
                continue
            loss, d = _run_kernel(logits, y, use_compile, softcap)
            del logits
            total += loss
            if need_h:
                grad_h[start:stop] = d @ w if scale == 1.0 else (d @ w) * scale
            if need_w:
                part = h.t() @ d
                if grad_w_t is None:
                    grad_w_t = part if stop == n else part.to(acc)
                else:
                    grad_w_t.add_(part)
            if need_b:
                grad_b += d.sum(0, dtype=acc) * scale
            del d
        grad_w = None
        if need_w:
            grad_w = torch.empty(weight.shape, dtype=acc, device=weight.device)
            grad_w.copy_(grad_w_t.t())
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        gh = grad_h * grad_output.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_output).to(ctx.weight_dtype) if grad_w is not None else None
        gb = (grad_b * grad_output).to(ctx.bias_dtype) if grad_b is not None else None
        return gh, gw, gb, None, None, None, None, None, None


def default_chunk(vocab_size: int) -> int:
    """Tokens per chunk: a (chunk, vocab) logits block of at most CHUNK_ELEMENTS (bf16: 256 MB)."""
    return max(64, (CHUNK_ELEMENTS // max(1, vocab_size)) // 64 * 64)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int | None = None, compute_dtype: torch.dtype | None = None,
                         use_compile: bool = True, bias: torch.Tensor | None = None, scale: float = 1.0,
                         softcap: float | None = None) -> torch.Tensor:
    """Summed cross-entropy of the logits `(hidden @ weight.T + bias) * scale`, soft-capped as
    `softcap * tanh(logits / softcap)` when softcap is set, against `targets` (every target is scored:
    drop ignored positions before calling). hidden (N, D), weight (V, D), bias (V,), targets (N,) int64."""
    if hidden.shape[0] == 0:
        zero = hidden.sum() * 0.0 + weight.sum() * 0.0
        return (zero + bias.sum() * 0.0 if bias is not None else zero).float()
    dtype = compute_dtype or _compute_dtype(hidden)
    chunk = int(chunk or default_chunk(weight.shape[0]))
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk, dtype, bool(use_compile),
                                     float(scale), float(softcap or 0.0))


def reference_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                            bias: torch.Tensor | None = None, scale: float = 1.0,
                            softcap: float | None = None) -> torch.Tensor:
    """The plain computation (full logits, fp32 cross-entropy), for tests and fallbacks."""
    logits = torch.nn.functional.linear(hidden, weight, bias) * scale
    logits = logits if logits.dtype == torch.float64 else logits.float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
