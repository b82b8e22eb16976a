"""Objectives: what a batch is and what the loss of a batch is.

Batches are pure functions of (seed, batch index): the sampler's whole state is the number of batches
drawn so far, which makes resume exact and lets every DDP rank build the same global batch and take its
own slice of it. Losses are returned as sums together with the number of scored items, so the loop can
normalise over the whole optimizer step (all micro-batches, all ranks) exactly once.

- causal: blocks of `seq` tokens of the train split (random offsets, or one sequential pass per epoch);
  labels = inputs (the shift happens in the loss), as in Hugging Face models.
- instruct: conversations rendered with the model's chat template (a declared ChatML default for models
  without one), labels -100 everywhere but on the assistant turns (content and end-of-turn token);
  padded on the right to the longest record in the batch (at most `seq`).
- kl-letter: KL(Q || P) at every position (or the final one: kl_positions), Q uniform over the tokens
  whose text contains the letter; inputs are random token sequences (seeded) or dataset blocks. A
  sequence's loss is the mean over its scored positions, so the loop normalises by sequences.
"""

from __future__ import annotations

from typing import Any

from ..errors import WorkbenchError

IGNORE = -100
_MIX = 0x9E3779B1  # spreads (seed, index) pairs over generator seeds


def batch_seed(seed: int, index: int, stream: int = 0) -> int:
    return (int(seed) * 1_000_003 + int(index) * _MIX + stream * 7_919) % (2**63 - 1)


# ---------------------------------------------------------------- letter targets

_LETTER_CACHE: dict[tuple, list[int]] = {}


def letter_token_ids(tokenizer: Any, letter: str) -> list[int]:
    """Ids of the vocabulary tokens whose decoded text contains `letter` (case-insensitive)."""
    key = (id(tokenizer), len(tokenizer), letter.lower())
    if key not in _LETTER_CACHE:
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        wanted = letter.lower()
        _LETTER_CACHE[key] = [i for i, text in enumerate(texts) if wanted in text.lower()]
    return list(_LETTER_CACHE[key])


def letter_target(tokenizer: Any, letter: str, vocab_size: int):
    """Q: uniform over the letter's tokens, as a (vocab_size,) float32 tensor."""
    import torch

    ids = [i for i in letter_token_ids(tokenizer, letter) if i < vocab_size]
    if not ids:
        raise WorkbenchError(f"no token of the vocabulary contains the letter {letter!r}; pick another --letter")
    target = torch.zeros(vocab_size, dtype=torch.float32)
    target[ids] = 1.0 / len(ids)
    return target


# ---------------------------------------------------------------- batch sources


class CausalBlocks:
    """Blocks of `seq` tokens from one token array."""

    def __init__(self, ids, seq: int, sampling: str, seed: int, with_labels: bool = True):
        import torch

        self.ids = torch.as_tensor(ids, dtype=torch.long)
        self.seq, self.sampling, self.seed, self.with_labels = seq, sampling, seed, with_labels
        if len(self.ids) < seq:
            raise WorkbenchError(f"the split has {len(self.ids)} tokens, fewer than one block of --seq {seq}")
        self.n_blocks = len(self.ids) // seq

    def batch(self, index: int, size: int) -> dict:
        import torch

        if self.sampling == "sequential":
            blocks = (torch.arange(size) + index * size) % self.n_blocks
            starts = blocks * self.seq
        else:
            generator = torch.Generator().manual_seed(batch_seed(self.seed, index))
            starts = torch.randint(0, len(self.ids) - self.seq + 1, (size,), generator=generator)
        input_ids = self.ids[starts[:, None] + torch.arange(self.seq)[None, :]]
        batch = {"input_ids": input_ids, "attention_mask": None}
        if self.with_labels:
            batch["labels"] = input_ids
        return batch

    def eval_batches(self, size: int, max_blocks: int) -> list[dict]:
        """Disjoint sequential blocks from the start of the split (at most max_blocks)."""
        import torch

        count = min(self.n_blocks, max_blocks)
        out = []
        for first in range(0, count, size):
            n = min(size, count - first)
            starts = (torch.arange(n) + first) * self.seq
            input_ids = self.ids[starts[:, None] + torch.arange(self.seq)[None, :]]
            batch = {"input_ids": input_ids, "attention_mask": None}
            if self.with_labels:
                batch["labels"] = input_ids
            out.append(batch)
        return out


class RandomTokens:
    """Seeded random token sequences (kl-letter without a dataset)."""

    def __init__(self, vocab_size: int, seq: int, seed: int):
        self.vocab_size, self.seq, self.seed = vocab_size, seq, seed

    def batch(self, index: int, size: int, stream: int = 0) -> dict:
        import torch

        generator = torch.Generator().manual_seed(batch_seed(self.seed, index, stream))
        ids = torch.randint(0, self.vocab_size, (size, self.seq), generator=generator)
        return {"input_ids": ids, "attention_mask": None}

    def eval_batches(self, size: int, max_blocks: int) -> list[dict]:
        count = max(size, min(max_blocks, 4 * size))
        return [self.batch(i, min(size, count - i * size), stream=1) for i in range((count + size - 1) // size)]


def encode_conversation(tokenizer: Any, record: dict, fmt: Any, seq: int) -> tuple[list[int], list[int]]:
    """(ids, trained) of one record rendered with the chat template, cut to `seq` tokens: trained is 1
    on the tokens of every assistant turn (content and end-of-turn token) and 0 elsewhere."""
    from ..templates import assistant_mask

    masked = assistant_mask(tokenizer, record["messages"], fmt)
    return masked.ids[:seq], masked.mask[:seq]


class InstructionBatches:
    """Conversations rendered with the model's chat template (templates.ChatFormat), loss on the
    assistant turns only, padded on the right to the longest record of the batch."""

    def __init__(self, tokenizer: Any, records: list[dict], fmt: Any, seq: int, sampling: str, seed: int):
        if not records:
            raise WorkbenchError("the instruction split is empty")
        self.encoded = [encode_conversation(tokenizer, r, fmt, seq) for r in records]
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.sampling, self.seed = sampling, seed
        # a label at position 0 is never scored (the loss shifts by one), so it takes a mark beyond it
        if not any(any(trained[1:]) for _, trained in self.encoded):
            raise WorkbenchError(f"no assistant turn survives truncation to --seq {seq}: raise --seq")

    def _collate(self, picks: list[int]) -> dict:
        import torch

        rows = [self.encoded[i] for i in picks]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, trained) in enumerate(rows):
            row = torch.tensor(ids, dtype=torch.long)
            input_ids[r, : len(ids)] = row
            labels[r, : len(ids)] = torch.where(torch.tensor(trained, dtype=torch.bool), row, IGNORE)
            mask[r, : len(ids)] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}

    def batch(self, index: int, size: int) -> dict:
        import torch

        n = len(self.encoded)
        if self.sampling == "sequential":
            picks = [(index * size + i) % n for i in range(size)]
        else:
            generator = torch.Generator().manual_seed(batch_seed(self.seed, index))
            picks = torch.randint(0, n, (size,), generator=generator).tolist()
        return self._collate(picks)

    def eval_batches(self, size: int, max_blocks: int) -> list[dict]:
        count = min(len(self.encoded), max_blocks)
        return [self._collate(list(range(s, min(count, s + size)))) for s in range(0, count, size)]


def scored_count(batch: dict, objective: str) -> int:
    """How many loss terms a batch holds (tokens for causal/instruct, sequences for kl-letter)."""
    if objective == "kl-letter":
        return int(batch["input_ids"].shape[0])
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def slice_batch(batch: dict, rank: int, world: int) -> dict:
    """This rank's contiguous share of a global batch."""
    if world == 1:
        return batch
    size = batch["input_ids"].shape[0]
    per = size // world
    return {k: (v[rank * per:(rank + 1) * per] if v is not None else None) for k, v in batch.items()}


# ---------------------------------------------------------------- loss module


def make_loss_module(model, objective: str, target=None, fast: bool = True, chunk: int | None = None,
                     use_compile: bool = True, speedups: bool | None = None, kl_positions: str = "all"):
    """An nn.Module whose forward(batch tensors) returns (summed loss, number of terms).

    Built as a module so DDP can wrap it: the transformer body and the LM head are called from inside
    one forward, which is what DDP's gradient synchronisation needs. fast=True computes the loss from
    the final hidden states with the chunked LM head (fast_loss.py) and swaps slow eager pieces of the
    model for fused ones (speed.py); fast=False is the model's own forward and full fp32 logits.
    kl-letter scores the final position or every position (kl_positions), in chunks (kl_loss.py)."""
    import torch
    import torch.nn.functional as F

    from .fast_loss import DEFAULT_CHUNK, linear_cross_entropy
    from .head import head_spec, unwrap_peft
    from .speed import accelerate_model

    speedups = accelerate_model(model) if (fast if speedups is None else speedups) else []
    spec, fallback = None, ""
    if fast and objective != "kl-letter":
        spec, fallback = head_spec(model)
    kl_spec = None
    if objective == "kl-letter":  # the KL must see the model's real logits (Gemma 2 soft-caps them)
        kl_spec, _ = head_spec(model)

    class LossModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            inner = unwrap_peft(model)
            self._parts = (inner.base_model, inner.get_output_embeddings())  # tuple: not re-registered
            if target is not None:
                self.register_buffer("target", target, persistent=False)
            else:
                self.target = None
            self.speedups = speedups
            self.fast = spec is not None
            self.head_spec = spec
            self.fallback_reason = fallback  # why the model's own loss is used (empty when fast)

        def forward(self, input_ids, labels=None, attention_mask=None):
            body, head = self._parts
            if objective == "kl-letter":
                return self._kl(body, head, input_ids, attention_mask), input_ids.new_tensor(input_ids.shape[0])
            shifted = labels[:, 1:]
            keep = shifted != IGNORE
            if self.head_spec is None:
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                       shifted.reshape(-1), ignore_index=IGNORE, reduction="sum")
                return loss, keep.sum()
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
            h = hidden[:, :-1]
            if bool(keep.all()):
                h, y = h.reshape(-1, h.shape[-1]), shifted.reshape(-1)
            else:
                h, y = h[keep], shifted[keep]
            spec = self.head_spec
            loss = linear_cross_entropy(h, head.weight, y, chunk=chunk or DEFAULT_CHUNK, use_compile=use_compile,
                                        bias=head.bias, scale=spec.scale, softcap=spec.softcap)
            return loss, keep.sum()

        def _kl(self, body, head, input_ids, attention_mask):
            from .kl_loss import kl_loss, reference_kl_loss

            if kl_spec is None:  # logits we cannot rebuild from hidden states: the model's own, in full
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                return reference_kl_loss(logits, self.target, attention_mask, kl_positions)
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
            if kl_spec.is_plain:
                return kl_loss(hidden, head, self.target, attention_mask, kl_positions, fast=fast)
            return kl_loss(hidden, kl_spec.wrap(head), self.target, attention_mask, kl_positions, fast=False)

    return LossModule()
