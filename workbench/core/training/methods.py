"""Methods: which weights train. full, LoRA (peft, targets per architecture), frozen attention, --freeze globs."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from ..errors import WorkbenchError
from .config import LORA_TARGETS, TrainConfig

# Glob patterns (over parameter names) that cover every attention weight, per architecture.
ATTENTION_PATTERNS = {
    "gpt2": ["transformer.h.*.attn.*"],
    "gpt-neo": ["transformer.h.*.attn.*"],
    "gpt-neox": ["gpt_neox.layers.*.attention.*"],
}


@dataclass
class MethodInfo:
    method: str
    targets: list[str] = field(default_factory=list)  # LoRA target modules, or frozen patterns
    trainable: int = 0
    total: int = 0
    frozen: list[str] = field(default_factory=list)  # names of frozen parameter tensors

    def describe(self) -> str:
        share = 100.0 * self.trainable / max(1, self.total)
        what = {"lora": "LoRA on", "full": "full fine-tune", "freeze-attention": "frozen:"}[self.method]
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


def apply_method(model, config: TrainConfig, arch: str):
    """Returns (model_to_train, MethodInfo). LoRA returns a peft model wrapping `model`."""
    if config.method == "lora":
        if arch not in LORA_TARGETS:
            raise WorkbenchError(f"--method lora has no target modules for architecture '{arch}'")
        from peft import LoraConfig, get_peft_model

        targets = list(LORA_TARGETS[arch])
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=targets, fan_in_fan_out=(arch == "gpt2"), bias="none",
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        trainable, total = count_parameters(model)
        return model, MethodInfo("lora", targets, trainable, total)

    patterns = list(config.freeze)
    if config.method == "freeze-attention":
        if arch not in ATTENTION_PATTERNS:
            raise WorkbenchError(f"--method freeze-attention does not know the attention layers of '{arch}'")
        patterns = ATTENTION_PATTERNS[arch] + patterns
    frozen = freeze_by_patterns(model, patterns)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise WorkbenchError("every parameter is frozen: nothing left to train (check --freeze)")
    return model, MethodInfo(config.method, patterns, trainable, total, frozen)


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
