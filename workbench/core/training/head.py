"""What a model's LM head does to the final hidden states, so the chunked loss (fast_loss.py) can do the same.

Most causal LMs compute `logits = lm_head(hidden)` (tied or not, with or without a bias). Some transform
the logits afterwards: Gemma 2 (and other models with `final_logit_softcapping`) soft-caps them as
`cap * tanh(logits / cap)`, Cohere multiplies them by `logit_scale`, Granite divides them by
`logits_scaling`. Gemma's embedding scaling lives inside the body, so it needs nothing here.

The spec is read from the config, then checked once against the model's own forward on a few tokens:
a head that does something we do not reproduce (a new transform, an adapted head) makes the training
fall back to the model's own loss, with the reason logged, instead of training on a wrong loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HeadSpec:
    scale: float = 1.0
    softcap: float | None = None

    def describe(self) -> str:
        parts = []
        if self.scale != 1.0:
            parts.append(f"logits x {self.scale:g}")
        if self.softcap:
            parts.append(f"soft-capped at {self.softcap:g}")
        return ", ".join(parts)

    @property
    def is_plain(self) -> bool:
        """The logits are lm_head(hidden) as they are."""
        return self.scale == 1.0 and not self.softcap

    def wrap(self, head):
        """A callable giving the model's logits from hidden states: the head, then this scaling."""
        return lambda hidden: self.apply(head(hidden))

    def apply(self, logits):
        """The model's logits from the plain head output (for callers that hold full logits)."""
        import torch

        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _candidates(config: Any) -> list[HeadSpec]:
    cap = getattr(config, "final_logit_softcapping", None) or None
    specs = []
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and scale not in (0, 1):
        specs.append(HeadSpec(float(scale), cap))
    scaling = getattr(config, "logits_scaling", None)
    if isinstance(scaling, (int, float)) and scaling not in (0, 1):  # Granite divides, others multiply
        specs += [HeadSpec(1.0 / float(scaling), cap), HeadSpec(float(scaling), cap)]
    specs.append(HeadSpec(1.0, cap))
    return specs


def unwrap_peft(model):
    """The transformers model under a PEFT wrapper (LoRA layers are injected in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) and hasattr(model, "peft_config") else model


def head_spec(model) -> tuple[HeadSpec | None, str]:
    """(the spec the chunked loss must apply, "") or (None, why the model's own loss must be used).

    `model` is the transformers model being trained (or the peft model around it)."""
    import torch

    inner = unwrap_peft(model)
    head = inner.get_output_embeddings()
    if head is None:
        return None, "the model has no output embedding (LM head) to read"
    if type(head) is not torch.nn.Linear:
        return None, f"its LM head is a {type(head).__name__}, not a plain linear layer (an adapted head?)"
    candidates = _candidates(inner.config)
    found = _first_matching(inner, head, candidates)
    if found is None:
        return None, "its logits are not lm_head(hidden) with a known scaling or soft-capping"
    return found, ""


def _first_matching(model, head, candidates: list[HeadSpec]) -> HeadSpec | None:
    """The first spec whose logits equal the model's own forward on a short input (eval mode, no grad)."""
    import torch

    import contextlib

    param = next(model.parameters())
    narrow = {p.dtype for p in model.parameters()} - {torch.float32, torch.float64}
    vocab = head.weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, 8), generator=generator).to(param.device)
    mixed = len(narrow) == 1 and param.device.type in ("cpu", "cuda") and any(
        p.dtype == torch.float32 for p in model.parameters())
    # a model with fp32 and bf16 parts (LoRA over a bf16 base) only runs under autocast, as in training
    autocast = torch.autocast(param.device.type, dtype=next(iter(narrow))) if mixed else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast:
            own = model(input_ids=ids, use_cache=False).logits.float()
            hidden = model.base_model(input_ids=ids, use_cache=False)[0]
            plain = head(hidden).float()
    finally:
        model.train(was_training)
    tolerance = (3e-2 if narrow else 1e-4) * max(1.0, float(own.abs().max()))
    for spec in candidates:
        if float((spec.apply(plain) - own).abs().max()) <= tolerance:
            return spec
    return None
