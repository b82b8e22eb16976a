"""The kl-letter loss, KL(Q || P), at the final position or at every position, without full fp32 logits.

Q is a fixed target distribution over the vocabulary (uniform over the tokens that contain a letter);
P = softmax(h @ W.T) at a position. Per position, KL(Q || P) = sum_v Q_v log Q_v + logsumexp(z) - Q . z,
whose gradient with respect to the logits z is softmax(z) - Q: a cross-entropy against a soft target.

The seed trained the final position of each sequence only; generation from a short prompt then visits
positions that never learned the preference (65 % X-tokens in free generation against 100 % when every
position is trained), so `positions="all"` is the default. Every position of a (batch 8, seq 128) batch
with the GPT-2 vocabulary would be 206 MB of fp32 logits (plus as much again for their gradient);
instead the positions are processed in chunks whose logits exist one chunk at a time:

- fast path (an LM head without bias): a custom autograd function computes each chunk's logits in the
  compute dtype, its loss and its gradients straight away (as fast_loss.py does for cross-entropy), so
  nothing is recomputed and the backward pass only scales the stored gradients;
- otherwise (a head with a bias, or the slow path): each chunk goes through the head module under
  activation checkpointing, so its logits are recomputed in the backward pass instead of being kept.

Each sequence's loss is the mean over its scored positions (one position for "final"), so a batch's
loss is a sum over sequences in both variants and the loop normalises by the number of sequences.
"""

from __future__ import annotations

import torch

KL_POSITIONS = ("all", "final")


def _plogq(q: torch.Tensor) -> torch.Tensor:
    """sum_v Q_v log Q_v (the constant part of KL(Q || P); 0 log 0 = 0)."""
    nz = q[q > 0]
    return (nz * nz.log()).sum()


def _kl_chunk(logits: torch.Tensor, q: torch.Tensor, weights: torch.Tensor, plogq: torch.Tensor):
    """(weighted summed KL, d loss / d logits in the logits' dtype) for one chunk; softmax in fp32."""
    x = logits.float()
    lse = torch.logsumexp(x, 1)
    kl = plogq + lse - x @ q
    d = torch.softmax(x, 1).sub_(q).mul_(weights[:, None])
    return (kl * weights).sum(), d.to(logits.dtype)


class _LinearKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, q, weights, chunk, compute_dtype):  # noqa: D401 - autograd API
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(compute_dtype)
        plogq = _plogq(q)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w_t = None  # (D, V): accumulated as h.T @ d, transposed once at the end
        for start in range(0, hidden.shape[0], chunk):
            stop = min(hidden.shape[0], start + chunk)
            h = hidden[start:stop].to(compute_dtype)
            loss, d = _kl_chunk(h @ w.t(), q, weights[start:stop], plogq)
            total += loss
            if need_h:
                grad_h[start:stop] = d @ w
            if need_w:
                part = (h.t() @ d).float()
                grad_w_t = part if grad_w_t is None else grad_w_t.add_(part)
            del d
        grad_w = grad_w_t.t().to(weight.dtype) if need_w else None
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_output.to(grad_h.dtype) if grad_h is not None else None
        gw = grad_w * grad_output.to(grad_w.dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None


def _head_kl(head, h: torch.Tensor, q: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(head(h).float(), dim=-1)
    kl = _plogq(q) - log_p @ q
    return (kl * weights).sum()


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


def select_positions(hidden: torch.Tensor, attention_mask, positions: str):
    """(hidden states of the scored positions (N, D), per-position weights (N,)): each sequence's
    weights sum to 1 (mean over its positions). Padding (mask 0) is never scored."""
    batch, seq = hidden.shape[:2]
    rows = torch.arange(batch, device=hidden.device)
    if positions == "final":
        last = attention_mask.sum(1) - 1 if attention_mask is not None else torch.full_like(rows, seq - 1)
        return hidden[rows, last], torch.ones(batch, device=hidden.device)
    if attention_mask is None:
        weights = torch.full((batch * seq,), 1.0 / seq, device=hidden.device)
        return hidden.reshape(batch * seq, -1), weights
    keep = attention_mask.bool()
    per_row = (1.0 / keep.sum(1).clamp(min=1).float())[:, None].expand(batch, seq)
    return hidden[keep], per_row[keep]


def kl_loss(hidden: torch.Tensor, head, q: torch.Tensor, attention_mask=None, positions: str = "all",
            chunk: int | None = None, fast: bool = True) -> torch.Tensor:
    """Sum over sequences of the mean KL(Q || P) over each sequence's scored positions (fp32).

    hidden (batch, seq, D) are the final hidden states, head the LM head module, q (V,) the target."""
    from .fast_loss import default_chunk

    if positions not in KL_POSITIONS:
        raise ValueError(f"unknown kl positions {positions!r}")
    h, weights = select_positions(hidden, attention_mask, positions)
    q = q.to(h.device, torch.float32)
    chunk = int(chunk or default_chunk(q.shape[0]))
    if fast and getattr(head, "bias", None) is None:
        return _LinearKL.apply(h, head.weight, q, weights, chunk, _compute_dtype(h))
    from torch.utils.checkpoint import checkpoint

    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for start in range(0, h.shape[0], chunk):
        part = slice(start, start + chunk)
        total = total + checkpoint(_head_kl, head, h[part], q, weights[part], use_reentrant=False)
    return total


def reference_kl_loss(logits: torch.Tensor, q: torch.Tensor, attention_mask=None, positions: str = "all"):
    """The plain computation from full fp32 logits (tests): the same sum of per-sequence means."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    per_position = torch.nn.functional.kl_div(log_p, q.expand_as(log_p), reduction="none").sum(-1)
    mask = attention_mask.to(per_position.dtype) if attention_mask is not None else torch.ones_like(per_position)
    if positions == "final":
        last = mask.sum(1).long() - 1
        return per_position[torch.arange(len(last)), last].sum()
    return ((per_position * mask).sum(1) / mask.sum(1)).sum()
