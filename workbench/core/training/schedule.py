"""Learning-rate schedules with linear warm-up (the same formulas as transformers' get_*_schedule_with_warmup,
so runs compare step for step with Hugging Face Trainer). `step` = optimizer steps done before this one."""

from __future__ import annotations

import math


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {schedule!r}")
