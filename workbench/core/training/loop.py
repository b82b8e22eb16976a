"""The training loop (body landing shortly; the signature and result are the contract)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import ModelRecord
from .config import TrainConfig


@dataclass
class TrainResult:
    model: ModelRecord | None
    steps_done: int
    final_train_loss: float | None
    final_val_loss: float | None
    stopped: bool = False
    last_checkpoint: str | None = None


def train(ctx, config: TrainConfig, run_dir: Path, on_metrics: Callable[[list[dict]], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False, job_id: int | None = None,
          progress: bool = True) -> TrainResult:
    raise NotImplementedError("training loop lands in the next commit")
