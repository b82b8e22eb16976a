"""Forward steps for the decoder: given new token ids and the cached past, the next-token logits.

Two kinds, same contract (`forward(ids) -> logits of the last position`, `length`, `crop(n)`, `reset()`):
- `LlamaStep`: Llama-layout models (llama, mistral, qwen2: SmolLM2, Llama 3, Qwen 2.5, Mistral) run as
  plain tensor code over the model's own weights: a preallocated KV cache written in place (no torch.cat
  per token), no module calls, masks or output objects, the LM head applied to the last position only.
  It follows transformers' Llama numerics (fp32 RMSNorm, the model's own rotary table, SDPA for a prompt,
  fp32 attention products for one new token, as SDPA computes internally), so greedy output equals
  `generate`. Optional int8 weight-only matrices (per-row scales) halve the bytes read.
- `ModelStep`: any other causal LM through its own forward with a transformers DynamicCache.
"""

from __future__ import annotations

from typing import Any

LLAMA_LAYOUT_TYPES = {"llama", "mistral", "qwen2"}


def llama_step_unavailable(model) -> str | None:
    """Why `model` cannot run as a LlamaStep (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if type(model).__name__.startswith("Peft"):
        return "a PEFT adapter model"
    if model_type not in LLAMA_LAYOUT_TYPES:
        return f"model type '{model_type}' is not Llama-layout"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return "a non-SiLU or biased MLP"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        return "an unexpected module layout"
    layer = inner.layers[0]
    if any(hasattr(layer.self_attn, n) for n in ("q_norm", "k_norm")):
        return "per-head q/k norms"
    if getattr(config, "use_sliding_window", False) or _sliding_window(config):
        return "sliding-window attention"
    return None


def _sliding_window(config) -> int | None:
    # Qwen2 configs carry a sliding_window value that only applies with use_sliding_window=True.
    window = getattr(config, "sliding_window", None)
    return int(window) if getattr(config, "model_type", None) == "mistral" and window else None


class _KV:
    """One layer's keys and values, [kv_heads, capacity, head_dim], grown in blocks, written in place."""

    BLOCK = 256

    def __init__(self, heads: int, head_dim: int, dtype, device):
        import torch

        self.keys = torch.empty(heads, 0, head_dim, dtype=dtype, device=device)
        self.values = torch.empty_like(self.keys)

    def ensure(self, needed: int) -> None:
        import torch

        capacity = self.keys.shape[1]
        if needed <= capacity:
            return
        new = -(-needed // self.BLOCK) * self.BLOCK
        shape = (self.keys.shape[0], new, self.keys.shape[2])
        keys = torch.empty(shape, dtype=self.keys.dtype, device=self.keys.device)
        values = torch.empty_like(keys)
        keys[:, :capacity] = self.keys
        values[:, :capacity] = self.values
        self.keys, self.values = keys, values


def quantize_int8(weight) -> tuple[Any, Any]:
    """Symmetric per-output-row int8 of a [out, in] matrix: (int8 weights, bf16 scales)."""
    import torch

    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scales.to(torch.bfloat16)


class _Linear:
    """y = x W^T + b over the model's own tensor (no copy). With int8, a single token's product runs on
    int8 weights with per-row scales (half the bytes of bf16, aten's weight-only kernel) while a prompt
    keeps the exact weights. (fbgemm's dynamic int8 kernels, tried too, also quantise the activations:
    SmolLM2's outlier activations took its perplexity from 19.4 to over 7,000.)"""

    def __init__(self, weight, bias=None, int8: bool = False):
        self.bias = bias
        self.weight = weight.detach()
        self.transposed = self.weight.t()  # a view: torch.mm on it skips linear's dispatch layers
        self.q = self.scales = None
        if int8:
            self.q, self.scales = quantize_int8(self.weight)

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        if x.dim() == 2 and x.shape[0] == 1:  # the single-token path: one kernel, nothing around it
            if self.q is not None:  # vectorised for bf16 activations (fp32 ones take a scalar path)
                y = torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scales).to(x.dtype)
                return y if self.bias is None else y + self.bias
            if self.bias is None:
                return torch.mm(x, self.transposed)
        return F.linear(x, self.weight, self.bias)

    def nbytes(self) -> int:
        """Bytes of matrix read for one token."""
        if self.q is not None:
            return self.q.numel() + self.scales.numel() * 2
        return self.weight.numel() * self.weight.element_size()


class LlamaStep:
    """Llama-layout forward over a preallocated KV cache (see the module docstring)."""

    def __init__(self, model, int8: bool = False):
        import torch

        config = model.config
        inner = model.model
        self.model = model
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens.weight.detach()
        self.norm_w, self.norm_eps = inner.norm.weight.detach(), inner.norm.variance_epsilon
        attn0 = inner.layers[0].self_attn
        self.head_dim = attn0.head_dim
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.scale = attn0.scaling
        self.dtype, self.device = self.embed.dtype, self.embed.device
        self.int8 = int8
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp

            def lin(mod):
                return _Linear(mod.weight, None if mod.bias is None else mod.bias.detach(), int8)

            self.layers.append(dict(
                ln1=(layer.input_layernorm.weight.detach(), layer.input_layernorm.variance_epsilon),
                ln2=(layer.post_attention_layernorm.weight.detach(), layer.post_attention_layernorm.variance_epsilon),
                q=lin(a.q_proj), k=lin(a.k_proj), v=lin(a.v_proj), o=lin(a.o_proj),
                gate=lin(m.gate_proj), up=lin(m.up_proj), down=lin(m.down_proj),
                kv=_KV(self.kv_heads, self.head_dim, self.dtype, self.device),
            ))
        # tied or not, the head is one matrix read once per token (the embedding lookup reads one row)
        self.head = _Linear(model.get_output_embeddings().weight, None, int8)
        self.length = 0
        self._positions = torch.arange(0, dtype=torch.long)

    def weight_bytes(self) -> int:
        """Bytes of matrices read per decoded token (the embedding row and norms are negligible)."""
        names = ("q", "k", "v", "o", "gate", "up", "down")
        return sum(layer[n].nbytes() for layer in self.layers for n in names) + self.head.nbytes()

    def reset(self) -> None:
        self.length = 0

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)

    @staticmethod
    def _rms(x, weight, eps):
        import torch

        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids: list[int]):
        """Append `ids` after the cached tokens; return the logits of the last one ([vocab], fp32)."""
        import torch
        import torch.nn.functional as F

        if len(ids) == 1:
            return self._forward_one(ids[0])
        start, count = self.length, len(ids)
        end = start + count
        tokens = torch.tensor(ids, dtype=torch.long, device=self.device)
        x = F.embedding(tokens, self.embed)[None]  # [1, T, hidden]
        positions = torch.arange(start, end, device=self.device)[None]
        cos, sin = self.rotary(x, positions)  # [1, T, head_dim], the model's own table and dtype
        cos, sin = cos[:, None], sin[:, None]
        mask, causal = None, count > 1
        if count > 1 and start > 0:  # new tokens after a reused prefix: see all of it, causal among themselves
            mask = torch.ones(count, end, dtype=torch.bool, device=self.device).tril(start)
            causal = False
        gqa = self.heads != self.kv_heads
        for layer in self.layers:
            h = self._rms(x, *layer["ln1"])
            q = layer["q"](h).view(1, count, self.heads, self.head_dim).transpose(1, 2)
            k = layer["k"](h).view(1, count, self.kv_heads, self.head_dim).transpose(1, 2)
            v = layer["v"](h).view(1, count, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            kv = layer["kv"]
            kv.ensure(end)
            kv.keys[:, start:end] = k[0]
            kv.values[:, start:end] = v[0]
            attn = F.scaled_dot_product_attention(
                q, kv.keys[None, :, :end], kv.values[None, :, :end], attn_mask=mask, is_causal=causal,
                scale=self.scale, enable_gqa=gqa)
            x = x + layer["o"](attn.transpose(1, 2).reshape(1, count, -1))
            h = self._rms(x, *layer["ln2"])
            x = x + layer["down"](F.silu(layer["gate"](h)) * layer["up"](h))
        self.length = end
        last = self._rms(x[:, -1:], self.norm_w, self.norm_eps)
        return self.head(last)[0, 0].float()


    def _forward_one(self, token: int):
        """One decoded token: 2-D tensors throughout, and attention as two small fp32 matrix products
        over the kept keys and values. CPU SDPA spends far more on setting up a single query than on the
        arithmetic (at 500 cached tokens about 5x the time of this), and it too computes in fp32."""
        import torch
        import torch.nn.functional as F

        start = self.length
        end = start + 1
        x = F.embedding(torch.tensor([token], device=self.device), self.embed)  # [1, hidden]
        cos, sin = self.rotary(x[None], torch.tensor([[start]], device=self.device))
        cos, sin = cos[0], sin[0]  # [1, head_dim]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        group = heads // kv_heads  # query heads per key/value head, adjacent as in repeat_kv
        for layer in self.layers:
            h = self._rms(x, *layer["ln1"])
            q = self._rotate(layer["q"](h).view(heads, dim), cos, sin)
            k = self._rotate(layer["k"](h).view(kv_heads, dim), cos, sin)
            kv = layer["kv"]
            kv.ensure(end)
            kv.keys[:, start] = k
            kv.values[:, start] = layer["v"](h).view(kv_heads, dim)
            keys, values = kv.keys[:, :end].float(), kv.values[:, :end].float()
            scores = torch.bmm(q.view(kv_heads, group, dim).float(), keys.transpose(1, 2)) * self.scale
            attn = self._weighted_values(scores, values).to(x.dtype).reshape(1, heads * dim)
            x = x + layer["o"](attn)
            h = self._rms(x, *layer["ln2"])
            x = x + layer["down"](F.silu(layer["gate"](h)) * layer["up"](h))
        self.length = end
        return self.head(self._rms(x, self.norm_w, self.norm_eps))[0].float()


    def _weighted_values(self, scores, values):
        """softmax(scores) @ values in fp32, rounded as CPU SDPA rounds for a bf16/fp16 model: its
        unnormalised weights exp(s - max) go to the model's dtype before the product, the sum does not."""
        import torch

        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        total = weights.sum(dim=-1, keepdim=True)
        if self.dtype != torch.float32:
            weights = weights.to(self.dtype).float()
        return torch.bmm(weights, values) / total


class ModelStep:
    """Any causal LM through its own forward and a transformers DynamicCache (crop for prefix reuse)."""

    def __init__(self, model):
        import inspect

        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.keep_arg = "logits_to_keep" in params
        self.cache = None
        self.length = 0

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def reset(self) -> None:
        self.cache, self.length = None, 0

    def crop(self, length: int) -> None:
        if length >= self.length:
            return
        if not getattr(self.cache, "is_croppable", False):  # e.g. a sliding window that moved on
            self.reset()
            return
        try:
            self.cache.crop(length - self.length)
            self.length = length
        except Exception:  # noqa: BLE001 - a cache kind that cannot crop (sliding windows): start afresh
            self.reset()

    def forward(self, ids: list[int]):
        import torch
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
        device = next(self.model.parameters()).device
        inputs = torch.tensor([ids], dtype=torch.long, device=device)
        kwargs = {self.cache_arg: self.cache, "use_cache": True}
        if self.keep_arg:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=inputs, **kwargs)
        self.cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None) or self.cache
        self.length += len(ids)
        return out.logits[0, -1].float()
