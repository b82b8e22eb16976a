"""The window scheme of rolling perplexity (pure Python, no torch).

The scored sequence is S = [prefix] + tokens, where the prefix is the tokenizer's BOS token (EOS where it
has none, as for GPT-2), so every token of the text is scored exactly once, the first one conditioned on
the prefix alone. A window is an input slice S[start:end] (at most `context` tokens) whose last `scored`
positions are scored: position j predicts S[start + j + 1], so the targets are S[end - scored + 1 : end + 1].

With stride == context (the default) the windows are lm-evaluation-harness's rolling log-likelihood
windows (`get_rolling_token_windows(..., context_len=1)` + `make_disjoint_window`): disjoint blocks of
`context` targets, the first one starting at the prefix, the last one extended to the left to a full
`context`-token input. With stride < context each window after the first scores `stride` new targets and
keeps the rest of its input as history, so every scored token sees at least context - stride tokens
before it (the Hugging Face "perplexity of fixed-length models" recipe, with the BOS prefix).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WorkbenchError


@dataclass(frozen=True)
class Window:
    start: int   # input = S[start:end]
    end: int
    scored: int  # the last `scored` positions of the input are scored

    @property
    def length(self) -> int:
        return self.end - self.start


def rolling_windows(n_tokens: int, context: int, stride: int | None = None) -> list[Window]:
    """Windows over S = [prefix] + n_tokens tokens; together they score S[1:] exactly once."""
    stride = context if stride is None else stride
    if context < 1:
        raise WorkbenchError(f"context must be at least 1 token (got {context})")
    if not 1 <= stride <= context:
        raise WorkbenchError(f"stride must be between 1 and the context ({context}) (got {stride})")
    if n_tokens <= 0:
        return []
    windows = []
    end_target = min(context, n_tokens) + 1  # targets S[1:end_target]
    windows.append(Window(0, end_target - 1, end_target - 1))
    while end_target < n_tokens + 1:
        first = end_target
        end_target = min(first + stride, n_tokens + 1)
        windows.append(Window(max(0, end_target - 1 - context), end_target - 1, end_target - first))
    return windows
