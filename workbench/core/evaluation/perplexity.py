"""Perplexity of a causal LM on a text (DESIGN.md "Metrics, defined once").

perplexity = exp(total NLL / scored tokens), the text prefixed with BOS (EOS where there is none) so every
token is scored exactly once; windows from `windows.rolling_windows` (lm-evaluation-harness's rolling
log-likelihood by default). The fast path batches equal-length windows, runs the transformer body once per
batch and computes the NLL from the LM head in row chunks, so only `logits_chunk` x vocab fp32 logits
exist at a time (never batch x context x vocab), under torch.inference_mode.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..errors import WorkbenchError
from .windows import Window, rolling_windows

ProgressCallback = Callable[[int, int], None]  # (done, total)

# Architectures whose logits are exactly lm_head(body(input_ids).last_hidden_state).
_PLAIN_HEAD_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2"}


class EvaluationCancelled(WorkbenchError):
    """Raised inside an evaluation when its should_stop() callback returns True."""


@dataclass
class PerplexityResult:
    tokens: int            # scored tokens (= tokens of the text)
    nll_sum: float         # natural-log NLL summed over the scored tokens
    perplexity: float
    bits_per_byte: float
    word_perplexity: float
    bytes: int
    words: int
    windows: int
    context: int
    stride: int
    batch_size: int
    dtype: str
    prefix_token: int
    seconds: float = 0.0
    tokens_per_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def prefix_token_id(tokenizer) -> int:
    """BOS, else EOS (GPT-2's tokenizer has both as <|endoftext|>)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise WorkbenchError("the tokenizer has neither a BOS nor an EOS token to prefix the text with")


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of the whole text, no special tokens (the prefix is added by the scorer)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def text_stats(text: str) -> tuple[int, int]:
    """(UTF-8 bytes, whitespace-separated words)."""
    return len(text.encode("utf-8")), len(text.split())


def _split_model(model):
    """(body, head) with logits == head(body(ids).last_hidden_state), or None for other architectures."""
    inner = model
    if type(model).__name__.startswith("Peft") and hasattr(model, "get_base_model"):
        inner = model.get_base_model()
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    body = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if body is None or head is None or body is inner:
        return None
    return body, head


def _batches(windows: list[Window], batch_size: int) -> list[list[Window]]:
    """Consecutive windows of equal length, at most batch_size each (no padding needed)."""
    batches: list[list[Window]] = []
    for window in windows:
        if batches and len(batches[-1]) < batch_size and batches[-1][0].length == window.length:
            batches[-1].append(window)
        else:
            batches.append([window])
    return batches


_ONEDNN = {"ok": None}


def onednn_enabled() -> bool:
    """Whether fp32 CPU matrix products may be routed to oneDNN: the op exists and passed a self-check."""
    import os

    if os.environ.get("WORKBENCH_ONEDNN", "1") == "0":
        return False
    if _ONEDNN["ok"] is None:
        import torch

        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                gen = torch.Generator().manual_seed(0)
                x, w = torch.randn(3, 5, 8, generator=gen), torch.randn(6, 8, generator=gen)
                b = torch.randn(6, generator=gen)
                got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
                ok = bool(torch.allclose(got, torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5))
        except Exception:  # noqa: BLE001 - op missing or unsupported build: keep torch's own matmuls
            ok = False
        _ONEDNN["ok"] = ok
    return _ONEDNN["ok"]


def _onednn_mode():
    """A TorchFunctionMode sending fp32 CPU F.linear / 2-D torch.addmm(bias, x, w) to oneDNN."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    linear_pointwise = torch.ops.mkldnn._linear_pointwise

    def fits(x, w) -> bool:
        return (x.dtype == torch.float32 and w.dtype == torch.float32 and x.device.type == "cpu"
                and w.device.type == "cpu" and not x.is_mkldnn and not w.is_mkldnn and x.dim() >= 2
                and w.dim() == 2 and x.shape[-1] == w.shape[1])

    class OneDNNMatmuls(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.linear:
                x, w = args[0], (args[1] if len(args) > 1 else kwargs.get("weight"))
                b = args[2] if len(args) > 2 else kwargs.get("bias")
                if w is not None and fits(x, w) and (b is None or (b.dtype == torch.float32 and b.dim() == 1)):
                    return linear_pointwise(x, w, b, "none", [], "")
            elif func is torch.addmm and len(args) == 3 and not kwargs:  # transformers' Conv1D
                b, x, w = args
                if (isinstance(b, torch.Tensor) and b.dim() == 1 and b.dtype == torch.float32
                        and x.dim() == 2 and fits(x, w.t())):
                    return linear_pointwise(x, w.t(), b, "none", [], "")
            return func(*args, **kwargs)

    return OneDNNMatmuls()


def _chunk_nll(logits, targets):
    """Summed NLL of a (rows, vocab) logits chunk: logsumexp - logit of the target, fp32, summed in fp64."""
    import torch

    x = logits.float()
    picked = x.gather(1, targets[:, None]).squeeze(1)
    return (torch.logsumexp(x, 1) - picked).sum(dtype=torch.float64)


def score_ids(model, ids: list[int], context: int, stride: int | None = None, batch_size: int = 8,
              dtype: str = "fp32", device: str | None = None, logits_chunk: int = 512,
              on_progress: ProgressCallback | None = None,
              should_stop: Callable[[], bool] | None = None) -> tuple[float, int, int]:
    """Summed NLL of S[1:] for S = ids (ids[0] is the prefix token). Returns (nll_sum, scored, windows)."""
    import torch

    if batch_size < 1:
        raise WorkbenchError(f"batch size must be at least 1 (got {batch_size})")
    windows = rolling_windows(len(ids) - 1, context, stride)
    total = len(ids) - 1
    device = device or str(next(model.parameters()).device)
    if dtype not in ("fp32", "bf16"):
        raise WorkbenchError(f"unknown precision '{dtype}': use fp32 or bf16")
    autocast = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                if dtype == "bf16" else _null())
    on_cpu = device.split(":")[0] == "cpu"
    if on_cpu:
        from ..training.speed import keep_freed_memory

        keep_freed_memory()
    matmuls = _onednn_mode() if dtype == "fp32" and on_cpu and onednn_enabled() else _null()
    split = _split_model(model)
    sequence = torch.tensor(ids, dtype=torch.long)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    done = 0
    if on_progress:
        on_progress(0, total)
    with torch.inference_mode(), autocast, matmuls:
        for batch in _batches(windows, batch_size):
            if should_stop and should_stop():
                raise EvaluationCancelled("evaluation cancelled")
            inputs = torch.stack([sequence[w.start:w.end] for w in batch]).to(device)
            targets = torch.cat([sequence[w.end - w.scored + 1:w.end + 1] for w in batch]).to(device)
            if split is not None:
                body, head = split
                hidden = body(input_ids=inputs, use_cache=False).last_hidden_state
            else:  # generic path: the model's own logits, only for the scored positions
                keep = max(w.scored for w in batch)
                hidden, head = model(input_ids=inputs, use_cache=False, logits_to_keep=keep).logits, None
            length = hidden.shape[1]
            rows = torch.cat([hidden[i, length - w.scored:] for i, w in enumerate(batch)])
            for begin in range(0, rows.shape[0], logits_chunk):
                chunk = rows[begin:begin + logits_chunk]
                logits = head(chunk) if head is not None else chunk
                nll += _chunk_nll(logits, targets[begin:begin + logits_chunk])
            done += targets.numel()
            if on_progress:
                on_progress(done, total)
    return float(nll), done, len(windows)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def perplexity(loaded, text: str, context: int | None = None, stride: int | None = None,
               batch_size: int = 8, dtype: str = "fp32", logits_chunk: int = 512,
               on_progress: ProgressCallback | None = None,
               should_stop: Callable[[], bool] | None = None) -> PerplexityResult:
    """Perplexity of `loaded` (a models.LoadedModel) on `text`, as DESIGN.md defines it.

    context defaults to the model's context length (and may not exceed it); stride defaults to the
    context (disjoint lm-evaluation-harness windows). on_progress(done_tokens, total_tokens) is called
    after every batch; should_stop() is polled between batches (True raises EvaluationCancelled)."""
    if not text:
        raise WorkbenchError("nothing to score: the text is empty")
    model_context = int(loaded.context_length)
    context = model_context if context is None else int(context)
    if context > model_context:
        raise WorkbenchError(f"--context {context} exceeds the context of '{loaded.name}' ({model_context})")
    stride = context if stride is None else int(stride)
    prefix = prefix_token_id(loaded.tokenizer)
    ids = [prefix] + encode_text(loaded.tokenizer, text)
    if len(ids) < 2:
        raise WorkbenchError("nothing to score: the text has no tokens")
    started = time.perf_counter()
    nll_sum, scored, n_windows = score_ids(
        loaded.model, ids, context, stride, batch_size, dtype, loaded.device, logits_chunk,
        on_progress, should_stop)
    seconds = time.perf_counter() - started
    n_bytes, n_words = text_stats(text)
    return PerplexityResult(
        tokens=scored, nll_sum=nll_sum, perplexity=_exp(nll_sum / scored),
        bits_per_byte=nll_sum / n_bytes / math.log(2), word_perplexity=_exp(nll_sum / max(1, n_words)),
        bytes=n_bytes, words=n_words, windows=n_windows, context=context, stride=stride,
        batch_size=batch_size, dtype=dtype, prefix_token=prefix, seconds=seconds,
        tokens_per_s=scored / seconds if seconds > 0 else 0.0,
    )


def _exp(x: float) -> float:
    """exp that reports an overflow as infinity: text with few spaces (Chinese, code, base64) has so
    few words that its word perplexity is beyond any float."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
