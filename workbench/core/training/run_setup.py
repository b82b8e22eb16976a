"""Building a training run before its first step: the batch sources of the dataset's splits (or random
tokens), the base model loaded in fp32 with the method applied (precision.py says why and what is saved),
the loss module with its speed-ups (and their one-line summary), the DDP wrapper under torchrun, and the
AdamW optimizer. The result is one TrainRun that the step loop and the checkpoint code share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from .config import ADAPTER_METHODS, TrainConfig
from .distributed import Distributed, say_on_main


@dataclass
class TrainRun:
    """Everything built before the first step."""

    model: Any  # the model being trained (a PEFT model for LoRA)
    tokenizer: Any
    loss_module: Any
    wrapped: Any  # loss_module, or its DDP wrapper
    params: list
    optimizer: Any
    source: Any
    val_source: Any
    arch: str
    device: str
    autocast_dtype: Any
    info: Any
    extra: dict = field(default_factory=dict)


def load_split(ctx, config: TrainConfig, tokenizer, split: str):
    from .. import data
    from ..templates import instruct_format
    from .objectives import CausalBlocks, InstructionBatches

    record = ctx.registry.get_dataset(config.dataset)
    seed = config.seed if split == "train" else config.seed + 7
    if config.objective == "instruct":
        records = data.read_instructions(ctx, record, split)
        if not records:
            if split == "train":
                raise WorkbenchError(f"dataset '{record.name}' has no training records")
            return None
        fmt = instruct_format(tokenizer, ctx.registry.get_model(config.base_model).path)
        return InstructionBatches(tokenizer, records, fmt, config.seq, config.sampling, seed)
    ids = data.split_token_array(ctx, record, split, tokenizer)
    if len(ids) < config.seq:
        if split == "train":
            raise WorkbenchError(f"dataset '{record.name}' has {len(ids)} training tokens, fewer than "
                                 f"one block of --seq {config.seq}")
        return None
    return CausalBlocks(ids, config.seq, config.sampling, seed, with_labels=config.objective == "causal")


def build_run(ctx, config: TrainConfig, dist: Distributed, device: str, fast_loss: bool, compile_body: bool,
              chunk: int | None, compile_loss: bool = True, model_speedups: bool | None = None) -> TrainRun:
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import _read_config, arch_of, load_tokenizer
    from .methods import apply_method
    from .objectives import RandomTokens, letter_target, make_loss_module
    from .precision import keep_frozen_in, resolve_precision, saved_dtype, torch_dtype
    from .speed import keep_freed_memory

    base = ctx.registry.get_model(config.base_model)
    arch = arch_of(_read_config(Path(base.path)))
    tokenizer = load_tokenizer(base.path)
    target = None
    if config.objective == "kl-letter":
        vocab = vocab_size_of(base.path)
        target = letter_target(tokenizer, config.letter, vocab)
    if config.dataset:
        source = load_split(ctx, config, tokenizer, "train")
        val_source = load_split(ctx, config, tokenizer, "val")
    else:
        source = RandomTokens(vocab_size_of(base.path), config.seq, config.seed)
        val_source = RandomTokens(vocab_size_of(base.path), config.seq, config.seed + 7)

    torch.manual_seed(config.seed)
    with quiet_hf():
        try:
            model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True, trust_remote_code=False,
                                                         dtype=torch.float32)
        except Exception as error:  # noqa: BLE001 - a broken folder fails in many ways
            raise WorkbenchError(f"cannot load '{base.name}' for training: {str(error).splitlines()[0]}") from None
    model.config.use_cache = False
    model, info = apply_method(model, config, arch)
    autocast_dtype = resolve_precision(config.precision, device)
    base_dtype = saved_dtype(base.path)
    kept = 0
    if config.method in ADAPTER_METHODS and autocast_dtype is not None and torch_dtype(base_dtype) == autocast_dtype:
        kept = keep_frozen_in(model, autocast_dtype)  # see precision.py: no fp32 copy of frozen weights
    model.to(device)
    model.train()
    say_on_main(dist, f"method: {info.describe()}")
    allocator = fast_loss and device.startswith("cpu") and keep_freed_memory()
    loss_module = make_loss_module(model, config.objective, target=target, fast=fast_loss, chunk=chunk,
                                   use_compile=compile_loss, speedups=model_speedups,
                                   kl_positions=config.kl_positions)
    loss_module.to(device)
    notes = list(loss_module.speedups)
    if loss_module.fast and config.objective != "kl-letter":
        extra = loss_module.head_spec.describe()
        notes.append("chunked LM-head loss" + (" (compiled kernel)" if compile_loss else "")
                     + (f" ({extra})" if extra else ""))
    elif loss_module.fallback_reason:
        notes.append(f"the model's own loss: {loss_module.fallback_reason}")
    if autocast_dtype is not None:
        notes.append("bf16 autocast")
    if allocator:
        notes.append("malloc keeps freed blocks")
    if kept:
        notes.append(f"{kept} frozen weights kept in {base_dtype}")
    if compile_body:
        notes.append("compiled body (torch.compile: the first steps take longer)")
    say_on_main(dist, f"speed: {', '.join(notes) or 'plain fp32'}")
    if compile_body:
        body, head = loss_module._parts
        loss_module._parts = (torch.compile(body), head)
    wrapped = loss_module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(loss_module, device_ids=[dist.local_rank] if device.startswith("cuda")
                                          else None)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config, device)
    return TrainRun(model, tokenizer, loss_module, wrapped, params, optimizer, source, val_source, arch, device,
                    autocast_dtype, info, {"base_dtype": base_dtype})


class quiet_hf:
    """transformers' own progress bars ("Loading weights", "Writing model shards") off for a moment."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc) -> None:
        from transformers.utils import logging as hf_logging

        if self.was_on:
            hf_logging.enable_progress_bar()


def vocab_size_of(folder: str) -> int:
    from ..models import _read_config

    config = _read_config(Path(folder))
    return int(config.get("vocab_size") or 50257)


def make_optimizer(params: list, config: TrainConfig, device: str):
    import torch

    kind = device.split(":")[0]
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    if kind in ("cpu", "cuda"):
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return torch.optim.AdamW(params, **kwargs)
