"""Training-time replacements for slow eager pieces of the transformers models (same maths, fewer passes).

- GPT-Neo's eager attention (transformers 5 has no SDPA path for it) up-casts q/k to fp32, materialises the
  (B, H, T, T) scores, masks them with torch.where, soft-maxes and casts back: many full passes, in fp32
  even under bf16 autocast. On GPUs it is replaced by torch's scaled_dot_product_attention with GPT-Neo's
  conventions (no 1/sqrt(d) scaling, causal, local layers keep their sliding window), a fused kernel.
  Training batches are unpadded or right-padded, so causal masking alone gives the same outputs at every
  real position (padding only ever follows the real tokens). Not on CPU: measured at the reference shape
  (T=256, 2 cores, bf16) torch's CPU SDPA kernel made the body ~10 % slower than the eager path.
- "gelu_new" (GPT-2 / GPT-Neo) is computed by transformers as ~8 separate element-wise ops; torch's
  gelu(approximate="tanh") is the same function in one fused kernel (forward and backward).

Applied to the model object being trained only (nothing changes in saved weights or configs).
"""

from __future__ import annotations

import types


def _neo_sdpa_attn(self, query, key, value, attention_mask=None):
    import torch
    import torch.nn.functional as F

    q_len, k_len = query.size(-2), key.size(-2)
    dropout = self.attn_dropout.p if self.training else 0.0
    if self.attention_type == "local" and k_len > self.config.window_size:
        mask = self.bias[:, :, k_len - q_len:k_len, :k_len]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=1.0)
    elif q_len == k_len:
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, dropout_p=dropout, scale=1.0)
    else:  # not a training shape (cached decoding): keep the original
        return type(self)._attn(self, query, key, value, attention_mask)
    del torch
    return out, None


def accelerate_model(model, attention: bool | None = None) -> list[str]:
    """Patch the model's modules in place for training speed; returns what was changed.

    attention: swap GPT-Neo's eager attention for SDPA (default: when the model is on a GPU)."""
    import torch

    if attention is None:
        first = next(model.parameters(), None)
        attention = first is not None and first.device.type == "cuda"
    changed: list[str] = []
    n_attn = n_gelu = 0
    for module in model.modules():
        name = type(module).__name__
        if attention and name == "GPTNeoSelfAttention" and hasattr(module, "_attn") and hasattr(module, "bias"):
            module._attn = types.MethodType(_neo_sdpa_attn, module)
            n_attn += 1
        for attr in ("act", "activation"):
            act = getattr(module, attr, None)
            if act is not None and type(act).__name__ in ("NewGELUActivation", "GELUTanh", "PytorchGELUTanh"):
                setattr(module, attr, torch.nn.GELU(approximate="tanh"))
                n_gelu += 1
    if n_attn:
        changed.append(f"sdpa attention x{n_attn}")
    if n_gelu:
        changed.append(f"fused gelu x{n_gelu}")
    return changed


_ALLOCATOR = {"tuned": None}


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of handing them back to the kernel.

    A training step allocates and frees the same few hundred MB every step (logits, their gradient, the
    LM-head weight gradient...). By default glibc serves every block over 32 MB with a fresh mmap and
    unmaps it on free, so each step pays page faults and kernel page zeroing for all of it (a quarter of
    the step time at the reference shape). With mmap off and trimming off, freed blocks are reused. The
    process then keeps its peak memory until it exits, which suits a training process. Linux/glibc only;
    WORKBENCH_MALLOC_TUNE=0 turns it off. Returns whether the setting is in effect."""
    import ctypes
    import os
    import sys

    if _ALLOCATOR["tuned"] is not None:
        return _ALLOCATOR["tuned"]
    tuned = False
    if sys.platform.startswith("linux") and os.environ.get("WORKBENCH_MALLOC_TUNE", "1") != "0":
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.gnu_get_libc_version  # glibc only (musl has no mallopt knobs)
            m_trim_threshold, m_mmap_max = -1, -4
            tuned = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
        except (OSError, AttributeError):
            tuned = False
    _ALLOCATOR["tuned"] = tuned
    return tuned
