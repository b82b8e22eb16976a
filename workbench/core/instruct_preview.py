"""What instruction tuning will train on: records of a dataset rendered with a model's chat template,
with the trained (assistant) tokens marked. Used by `workbench data show --preview`."""

from __future__ import annotations

from .context import Context
from .errors import WorkbenchError


def preview_records(ctx: Context, dataset: str, model: str, count: int, split: str = "train") -> dict:
    """The first `count` records of a split as the instruct objective renders them for `model`."""
    from .data import read_instructions
    from .models import load_tokenizer
    from .templates import assistant_mask, instruct_format

    if count < 1:
        raise WorkbenchError(f"--preview must be at least 1 (got {count})")
    record = ctx.registry.get_model(model)
    records = read_instructions(ctx, dataset, split)[:count]
    tokenizer = load_tokenizer(record.path)
    fmt = instruct_format(tokenizer, record.path)
    rendered = []
    for item in records:
        masked = assistant_mask(tokenizer, item["messages"], fmt)
        rendered.append({"messages": item["messages"], "text": masked.text, "tokens": len(masked.ids),
                         "trained_tokens": sum(masked.mask),
                         "segments": [{"text": text, "trained": trained} for text, trained in masked.segments()]})
    return {"dataset": dataset, "split": split, "model": model, "template_source": fmt.source,
            "records": rendered}
