"""Training: objectives, methods (full / LoRA / frozen parts), the loop, checkpoints.

Cheap to import: torch and friends load inside the functions that need them."""

from .config import TrainConfig  # noqa: F401
