"""What an evaluation is asked to do: the metric names and their aliases, the metrics each task reports,
and EvalRequest with its validation (one perplexity target, --refs for the reference metrics, known
precisions and chat-template modes). The CLI, the TUI and recipes build one and hand it to evaluate().
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import WorkbenchError

TASKS = ("ppl", "bleu", "rouge", "f1", "exact-match", "x-ratio", "style")
REF_TASKS = ("bleu", "rouge", "f1", "exact-match")  # scored against --refs
_ALIASES = {"perplexity": "ppl", "x_ratio": "x-ratio", "xratio": "x-ratio", "x": "x-ratio",
            "bits_per_byte": "ppl", "rouge1": "rouge", "rouge2": "rouge", "rougel": "rouge",
            "rougelsum": "rouge", "em": "exact-match", "exact_match": "exact-match", "exactmatch": "exact-match",
            "token-f1": "f1", "token_f1": "f1"}
PPL_METRICS = ("perplexity", "bits_per_byte", "word_perplexity")
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CHAT_TEMPLATE_MODES = ("auto", "on", "off")


def metric_names(tasks: list[str]) -> list[str]:
    """The per-model metric names the requested tasks report (what gates may name)."""
    names = {"ppl": list(PPL_METRICS), "bleu": ["bleu"], "rouge": list(ROUGE_METRICS), "f1": ["f1"],
             "exact-match": ["exact_match"],
             "x-ratio": ["x_ratio"], "style": ["style_self_attribution"]}
    return [name for task in parse_metrics(tasks) for name in names[task]]


def parse_metrics(text: str | list[str]) -> list[str]:
    """'ppl,bleu' -> ['ppl', 'bleu'] (aliases accepted, order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in TASKS:
            raise WorkbenchError(f"unknown metric '{item.strip()}': choose from {', '.join(TASKS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise WorkbenchError(f"no metrics requested (--metrics {','.join(TASKS)})")
    return out


@dataclass
class EvalRequest:
    metrics: list[str] = field(default_factory=lambda: ["ppl"])
    data: list[str] = field(default_factory=list)   # dataset names (style takes several)
    split: str = "test"
    file: str | None = None                          # a text file for perplexity
    refs: str | None = None                          # JSONL {"prompt", "reference"} for bleu/rouge
    context: int | None = None
    stride: int | None = None
    batch_size: int = 8
    dtype: str = "fp32"                              # fp32 | bf16 (autocast) for perplexity
    generation: dict = field(default_factory=dict)   # GenerationSettings fields (bleu/rouge/style/x-ratio)
    letter: str = "x"
    tokens: int = 200
    prompts: list[str] = field(default_factory=list)  # x-ratio prompts (default: random token ids)
    samples: int = 4
    prompt_tokens: int = 8
    seed: int = 0
    style_prompts: int = 4                           # prompts drawn per dataset for sample attribution
    style_tokens: int = 32
    device: str | None = None
    fresh: bool = False
    chat_template: str = "auto"                      # bleu/rouge prompts: auto | on | off (see refs_prompting)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "EvalRequest":
        from ..generation import GenerationSettings

        self.metrics = parse_metrics(self.metrics)
        GenerationSettings.from_dict(self.generation).validate()
        if self.file and self.data and "ppl" in self.metrics:
            raise WorkbenchError("give perplexity one target: --data NAME or --file PATH, not both")
        if "ppl" in self.metrics:
            if not self.file and not self.data:
                raise WorkbenchError("perplexity needs --data NAME or --file PATH")
            if not self.file and len(self.data) > 1:
                raise WorkbenchError("perplexity takes one --data; several datasets are for --metrics style")
        if any(task in self.metrics for task in REF_TASKS) and not self.refs:
            raise WorkbenchError("bleu/rouge/f1/exact-match need --refs FILE (JSONL with prompt and reference)")
        if "style" in self.metrics and not self.data:
            raise WorkbenchError("style attribution needs --data NAME (one or more datasets)")
        if self.batch_size < 1:
            raise WorkbenchError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise WorkbenchError(f"unknown --chat-template '{self.chat_template}': use auto, on or off")
        if self.dtype not in ("fp32", "bf16"):
            raise WorkbenchError(f"unknown precision '{self.dtype}': use fp32 or bf16")
        return self


def request_generation(request: EvalRequest) -> dict:
    from ..generation import GenerationSettings

    return GenerationSettings.from_dict(request.generation).to_dict()
