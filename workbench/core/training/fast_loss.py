"""Language-model loss straight from the final hidden states, never materialising the full logits.

The LM head of a small GPT with the GPT-2 vocabulary (50,257 columns) is most of the FLOPs and almost all
of the memory traffic of a training step: batch 8 x seq 256 of fp32 logits is 411 MB, written by the
matmul, read by the softmax, written again as its gradient and read by two more matmuls. Here the tokens
are processed in chunks: each chunk's logits are computed in the compute dtype (bf16 under autocast),
soft-maxed in fp32, and turned into the chunk's gradients right away (the cross-entropy gradient is
softmax - one_hot), so the backward pass only scales the stored gradients by the incoming grad. Peak
extra memory is one chunk of logits; nothing is recomputed.

`linear_cross_entropy(hidden, weight, targets)` returns the summed cross-entropy (fp32); the caller divides
by the number of scored tokens it wants to average over (across micro-batches and ranks).
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 1024


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, compute_dtype):  # noqa: D401 - autograd API
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = hidden.shape[0]
        w = weight.to(compute_dtype)
        acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32  # softmax / loss dtype
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            h = hidden[start:stop].to(compute_dtype)
            y = targets[start:stop]
            logits = (h @ w.t()).to(acc)  # (c, V) fp32, the only big buffer
            picked = logits.gather(1, y[:, None])
            peak = logits.amax(dim=1, keepdim=True)
            logits.sub_(peak).exp_()
            norm = logits.sum(dim=1, keepdim=True)
            total += (peak + norm.log() - picked).sum()
            if need_h or need_w:
                logits.div_(norm)  # softmax
                rows = torch.arange(stop - start, device=logits.device)
                logits[rows, y] -= 1.0  # d loss / d logits (for a summed loss)
                d = logits.to(compute_dtype)
                if need_h:
                    grad_h[start:stop] = (d @ w).to(hidden.dtype)
                if need_w:
                    grad_w += (d.t() @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_output.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_output).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = DEFAULT_CHUNK, compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` (no bias) against `targets` (every target is scored:
    drop ignored positions before calling). hidden (N, D), weight (V, D), targets (N,) int64."""
    if hidden.shape[0] == 0:
        return (hidden.sum() * 0.0 + weight.sum() * 0.0).float()
    dtype = compute_dtype or _compute_dtype(hidden)
    return _LinearCrossEntropy.apply(hidden, weight, targets, int(chunk), dtype)


def reference_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The plain computation (full logits, fp32 cross-entropy), for tests and fallbacks."""
    logits = hidden @ weight.t()
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
