"""Training settings: one dataclass, checked up front (before any model is loaded or data is read)."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import WorkbenchError

OBJECTIVES = ("causal", "instruct", "kl-letter")
METHODS = ("full", "lora", "dora", "freeze-attention")
ADAPTER_METHODS = ("lora", "dora")  # trained through peft; the result is an adapter (or merged with --merge)
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
SAMPLINGS = ("random", "sequential")
COMPILES = ("auto", "on", "off")  # torch.compile of the transformer body; auto: on a GPU for long runs
COMPILE_AUTO_MIN_STEPS = 300  # compiling costs a minute or two up front: worth it from about here
KL_POSITIONS = ("all", "final")  # kl-letter: train every position (default) or the seed's final one


@dataclass
class TrainConfig:
    base_model: str
    dataset: str | None
    out: str
    objective: str = "causal"
    letter: str = "x"
    kl_positions: str = "all"
    method: str = "full"
    freeze: list[str] = field(default_factory=list)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=list)  # empty: peft's default for the model type
    merge: bool = False
    steps: int = 100
    batch: int = 8
    seq: int = 128
    lr: float = 5e-4
    warmup: int = 10
    schedule: str = "cosine"
    grad_accum: int = 1
    clip: float = 1.0
    eval_every: int = 50
    save_every: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    precision: str = "auto"
    device: str | None = None
    sampling: str = "random"
    compile: str = "auto"

    def compiles_body(self, device: str) -> bool:
        """Whether the run torch.compiles the transformer body. auto: on CUDA for runs of at least
        COMPILE_AUTO_MIN_STEPS steps (on an H200 it took a SmolLM2-shaped full fine-tune from 0.95x to 2.24x
        Hugging Face Trainer's tokens/s after about two minutes of compiling; on CPUs it gains little)."""
        if self.compile != "auto":
            return self.compile == "on"
        return device.startswith("cuda") and self.steps >= COMPILE_AUTO_MIN_STEPS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["freeze"] = list(self.freeze)
        data["lora_targets"] = list(self.lora_targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)} | {"sep"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise WorkbenchError(f"unknown training settings: {', '.join(unknown)}")
        values = dict(data)
        values.pop("sep", None)  # jobs from before instruct used the chat template: no longer a setting
        if values.get("freeze") is None:
            values["freeze"] = []
        elif isinstance(values["freeze"], str):
            values["freeze"] = [values["freeze"]]
        targets = values.get("lora_targets")
        if isinstance(targets, str):  # "q_proj,v_proj" from a YAML or a form field
            values["lora_targets"] = [t.strip() for t in targets.split(",") if t.strip()]
        elif targets is None:
            values["lora_targets"] = []
        return cls(**values)

    # ------------------------------------------------------------ validation

    def validate_values(self) -> None:
        """Checks that need no workspace (numbers and choices)."""
        from ..models import validate_name

        validate_name(self.out, "output model")
        _choice("objective", self.objective, OBJECTIVES)
        _choice("method", self.method, METHODS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("compile", self.compile, COMPILES)
        _choice("sampling", self.sampling, SAMPLINGS)
        for label, value, low in (("steps", self.steps, 1), ("batch", self.batch, 1), ("seq", self.seq, 2),
                                  ("grad-accum", self.grad_accum, 1), ("warmup", self.warmup, 0),
                                  ("eval-every", self.eval_every, 0), ("save-every", self.save_every, 0),
                                  ("keep", self.keep_checkpoints, 1), ("lora-r", self.lora_r, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise WorkbenchError(f"--{label} must be an integer of at least {low} (got {value!r})")
        if not self.lr > 0:
            raise WorkbenchError(f"--lr must be positive (got {self.lr})")
        if self.clip is not None and self.clip < 0:
            raise WorkbenchError(f"--clip must be >= 0 (got {self.clip}; 0 turns clipping off)")
        if not 0 <= self.lora_dropout < 1:
            raise WorkbenchError(f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.lora_alpha <= 0:
            raise WorkbenchError(f"--lora-alpha must be positive (got {self.lora_alpha})")
        if self.objective == "kl-letter":
            if not isinstance(self.letter, str) or len(self.letter) != 1 or self.letter.isspace():
                raise WorkbenchError(f"--letter must be a single visible character (got {self.letter!r})")
            _choice("kl-positions", self.kl_positions, KL_POSITIONS)
        elif not self.dataset:
            raise WorkbenchError(f"the {self.objective} objective needs a dataset (--data NAME)")
        if self.merge and self.method not in ADAPTER_METHODS:
            raise WorkbenchError("--merge only applies to --method lora or dora")
        if self.method in ADAPTER_METHODS and self.freeze:
            raise WorkbenchError(f"--freeze does not combine with --method {self.method} "
                                 "(it trains only its adapters)")
        if self.lora_targets and self.method not in ADAPTER_METHODS:
            raise WorkbenchError("--lora-targets only applies to --method lora or dora")
        if self.batch % max(1, _world_size()):
            raise WorkbenchError(f"--batch {self.batch} does not split evenly over {_world_size()} processes")

    def validate(self, ctx) -> None:
        """Every check that can be made before loading weights: raises WorkbenchError (one line)."""
        from ..models import _read_config
        from pathlib import Path

        self.validate_values()
        registry = ctx.registry
        base = registry.get_model(self.base_model)
        if self.out == self.base_model:
            raise WorkbenchError("--out must differ from --model (training never overwrites its base)")
        if registry.find_model(self.out):
            raise WorkbenchError(f"a model named '{self.out}' is already registered; pick another --out")
        if base.adapter:
            if self.method in ADAPTER_METHODS:
                raise WorkbenchError(f"'{base.name}' is a LoRA adapter: train LoRA on its base "
                                     f"'{base.parent}', or merge it first")
            raise WorkbenchError(f"'{base.name}' is a LoRA adapter; training starts from a full model "
                                 f"(its base is '{base.parent}')")
        _read_config(Path(base.path))  # a folder without a readable config fails here, before any work
        context = base.context_length or 0
        if context and self.seq > context:
            raise WorkbenchError(f"--seq {self.seq} is longer than {base.name}'s context ({context} tokens)")
        if self.dataset:
            dataset = registry.get_dataset(self.dataset)
            wanted = "instructions" if self.objective == "instruct" else "text"
            if dataset.kind != wanted:
                raise WorkbenchError(f"the {self.objective} objective needs a {wanted} dataset; "
                                     f"'{dataset.name}' holds {dataset.kind}")
            splits = dataset.splits or {}
            if not splits.get("train"):
                raise WorkbenchError(f"dataset '{dataset.name}' has an empty train split")
            if self.objective in ("causal", "kl-letter") and splits.get("train", 0) < self.seq:
                raise WorkbenchError(f"dataset '{dataset.name}' has {splits.get('train', 0)} training tokens, "
                                     f"fewer than one block of --seq {self.seq}")
        if self.objective == "kl-letter":
            from ..models import load_tokenizer
            from .objectives import letter_token_ids

            if not letter_token_ids(load_tokenizer(base.path), self.letter):
                raise WorkbenchError(f"no token of {base.name}'s vocabulary contains the letter "
                                     f"{self.letter!r}; pick another --letter")
        if self.device:
            from ..models import resolve_device

            resolve_device(self.device)
        if self.precision == "bf16" and self.device and self.device.startswith("mps"):
            raise WorkbenchError("--precision bf16 is not supported on mps; use fp32")

    def freeze_matches(self, names: list[str]) -> dict[str, list[str]]:
        return {p: [n for n in names if fnmatch.fnmatchcase(n, p)] for p in self.freeze}


def _choice(label: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise WorkbenchError(f"unknown {label} '{value}': choose one of {', '.join(choices)}")


def _world_size() -> int:
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1
