"""Methods: which weights train. full, LoRA / DoRA (peft) and frozen attention for any causal LM, --freeze globs.

Nothing here knows a particular architecture by its parameter names:
- LoRA / DoRA targets come from peft's own per-architecture table (the modules peft's authors chose for
  each model type); a model type missing from it gets every linear layer but the output head (peft's
  "all-linear"); `--lora-targets` overrides either (module names, or all-linear).
- Attention is found by module: the outermost modules whose class is an attention block (its class name
  contains "Attention", as in LlamaAttention, GPT2Attention, GPTNeoSelfAttention, Phi3Attention...), else
  submodules called self_attn / attn / attention.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from ..errors import WorkbenchError
from .config import ADAPTER_METHODS, TrainConfig

ALL_LINEAR = "all-linear"
ATTENTION_NAMES = ("self_attn", "attn", "attention")


@dataclass
class MethodInfo:
    method: str
    targets: list[str] = field(default_factory=list)  # LoRA target modules, or frozen patterns / modules
    trainable: int = 0
    total: int = 0
    frozen: list[str] = field(default_factory=list)  # names of frozen parameter tensors

    def describe(self) -> str:
        share = 100.0 * self.trainable / max(1, self.total)
        what = {"lora": "LoRA on", "dora": "DoRA on", "full": "full fine-tune",
                "freeze-attention": "frozen:"}[self.method]
        targets = f" {', '.join(self.targets)}" if self.targets else ""
        if self.method == "full" and self.targets:
            what = "full fine-tune, frozen:"
        return f"{what}{targets}; trainable parameters {self.trainable:,} of {self.total:,} ({share:.2f}%)"


def count_parameters(model) -> tuple[int, int]:
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def default_lora_targets(model_type: str) -> list[str] | str:
    """peft's default target modules for this model type, else all-linear (every linear layer but the head)."""
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    except ImportError:  # a peft that moved its table: the generic choice still works everywhere
        table = {}
    targets = table.get(model_type)
    return list(targets) if isinstance(targets, (list, tuple)) else ALL_LINEAR


def lora_targets(config: TrainConfig, model_type: str) -> list[str] | str:
    if not config.lora_targets:
        return default_lora_targets(model_type)
    if [t.lower() for t in config.lora_targets] == [ALL_LINEAR]:
        return ALL_LINEAR
    return list(config.lora_targets)


def _uses_conv1d(model) -> bool:
    """GPT-2-style Conv1D layers store weights transposed (peft's fan_in_fan_out)."""
    return any(type(m).__name__ == "Conv1D" for m in model.modules())


def apply_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    model_type = getattr(model.config, "model_type", "")
    targets = lora_targets(config, model_type)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, fan_in_fan_out=_uses_conv1d(model), bias="none",
                      use_dora=config.method == "dora", task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        if "not found in the base model" not in str(error) and "target_modules" not in str(error):
            raise
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})
        raise WorkbenchError(f"--lora-targets {', '.join(config.lora_targets) or targets}: no such module in this "
                             f"{model_type} model (its linear layers: {', '.join(names)})") from None
    resolved = model.peft_config["default"].target_modules
    shown = targets if isinstance(targets, list) else sorted({t.rsplit(".", 1)[-1] for t in resolved})
    trainable, total = count_parameters(model)
    return model, MethodInfo(config.method, list(shown), trainable, total)


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def attention_modules(model) -> list[tuple[str, object]]:
    """(name, module) of every attention block, outermost only (a block's own sub-blocks are inside it)."""
    found = [(n, m) for n, m in model.named_modules() if n and "Attention" in type(m).__name__]
    if not found:
        found = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in ATTENTION_NAMES]
    outer: list[tuple[str, object]] = []
    for name, module in found:
        if not any(name.startswith(parent + ".") for parent, _ in outer):
            outer.append((name, module))
    return [(n, m) for n, m in outer if any(True for _ in m.parameters())]


def freeze_attention(model) -> list[str]:
    blocks = attention_modules(model)
    if not blocks:
        raise WorkbenchError(f"--method freeze-attention found no attention module in this "
                             f"{getattr(model.config, 'model_type', '?')} model")
    frozen: list[str] = []
    for name, module in blocks:
        for sub, param in module.named_parameters(remove_duplicate=False):
            param.requires_grad_(False)
            frozen.append(f"{name}.{sub}")
    return frozen


def apply_method(model, config: TrainConfig, arch: str = ""):
    """Returns (model_to_train, MethodInfo). LoRA / DoRA return a peft model wrapping `model`."""
    if config.method in ADAPTER_METHODS:
        return apply_lora(model, config)
    frozen: list[str] = []
    shown: list[str] = []
    if config.method == "freeze-attention":
        frozen = freeze_attention(model)
        kinds = sorted({type(m).__name__ for _, m in attention_modules(model)})
        shown = [f"{len(attention_modules(model))} attention modules ({', '.join(kinds)})"]
    frozen += [n for n in freeze_by_patterns(model, list(config.freeze)) if n not in frozen]
    shown += list(config.freeze)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise WorkbenchError("every parameter is frozen: nothing left to train (check --freeze)")
    return model, MethodInfo(config.method, shown, trainable, total, frozen)


def freeze_by_patterns(model, patterns: list[str]) -> list[str]:
    """Set requires_grad=False on parameters whose name matches a glob; each pattern must match."""
    names = [(name, p) for name, p in model.named_parameters(remove_duplicate=False)]
    frozen: list[str] = []
    for pattern in patterns:
        hits = [(n, p) for n, p in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            example = next((n for n, _ in names if ".0." in n), names[0][0] if names else "?")
            raise WorkbenchError(f"--freeze {pattern!r} matches no parameter (names look like {example!r})")
        for name, param in hits:
            param.requires_grad_(False)
            if name not in frozen:
                frozen.append(name)
    return frozen
