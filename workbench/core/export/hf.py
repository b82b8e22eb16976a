"""Hugging Face folder exports: merged (an adapter folded into its base), fp16, bf16 and int8.

int8 is torchao's int8 weight-only quantisation through transformers' TorchAoConfig: every Linear weight
is stored as int8 with a per-row scale; embeddings and norms stay bf16. The folder loads back with plain
`AutoModelForCausalLM.from_pretrained` on CPU (torchao installed).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..errors import WorkbenchError
from .checks import folder_bytes, perplexity_of, relative_change

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def load_source(registry, record, dtype: str = "fp32"):
    """(model, tokenizer) of a registered model in `dtype`; an adapter comes merged into its base."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import load_tokenizer, quiet_transformers

    quiet_transformers()
    torch_dtype = getattr(torch, DTYPES[dtype])
    base = registry.get_model(record.parent) if record.adapter else record
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch_dtype, use_safetensors=True)
    if record.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, record.path).merge_and_unload()
    model.eval()
    folder = Path(record.path)
    tokenizer_folder = folder if any((folder / n).exists() for n in ("tokenizer.json", "vocab.json")) else Path(base.path)
    return model, load_tokenizer(tokenizer_folder), Path(base.path)


def save_folder(model, tokenizer, source_folder: Path, target: Path) -> None:
    """save_pretrained of model and tokenizer, plus any chat template file of the source's that the tokenizer
    did not write itself, so the export is prompted exactly as its source."""
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    for template in source_folder.glob("*.jinja"):
        if not (target / template.name).exists():
            shutil.copy2(template, target / template.name)


def _max_logit_diff(a, b, tokenizer, text: str) -> float:
    import torch

    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:64]])
    with torch.inference_mode():
        return float((a(input_ids=ids).logits.float() - b(input_ids=ids).logits.float()).abs().max())


def export_dtype(registry, record, fmt: str, staging: Path, text: str) -> dict:
    """merged / fp16 / bf16: the weights in that dtype (merged keeps the base's dtype), verified by reloading."""
    import torch
    from transformers import AutoModelForCausalLM

    if fmt == "merged" and not record.adapter:
        raise WorkbenchError(f"'{record.name}' is a full model, not an adapter: --format merged folds an adapter "
                             "into its base (use fp16, bf16, int8, onnx or gguf for a full model)")
    dtype = fmt if fmt in ("fp16", "bf16") else _stored_dtype(registry, record)
    model, tokenizer, source_folder = load_source(registry, record, dtype)
    save_folder(model, tokenizer, Path(record.path), staging)
    reloaded = AutoModelForCausalLM.from_pretrained(str(staging), dtype=getattr(torch, DTYPES[dtype]))
    reloaded.eval()
    return {"dtype": dtype, "max_logit_diff_reloaded": _max_logit_diff(model, reloaded, tokenizer, text),
            "perplexity": perplexity_of(reloaded.float(), tokenizer, text), "bytes": folder_bytes(staging)}


def _stored_dtype(registry, record) -> str:
    import json

    base = registry.get_model(record.parent) if record.adapter else record
    stored = json.loads((Path(base.path) / "config.json").read_text()).get("dtype") or "float32"
    return {"float16": "fp16", "bfloat16": "bf16"}.get(str(stored), "fp32")


def quiet_torchao() -> None:
    """torchao logs a warning per CUDA-only extension it cannot load on CPU; those are not our users' concern."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def export_int8(registry, record, staging: Path, text: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, TorchAoConfig

    quiet_torchao()
    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError:
        raise WorkbenchError("--format int8 needs torchao (pip install 'workbench[export]')") from None
    model, tokenizer, source_folder = load_source(registry, record, "bf16")
    unique = {t.data_ptr(): t for t in model.state_dict().values()}  # a tied head is stored once
    bf16_bytes = sum(t.numel() * 2 for t in unique.values())  # what a bf16 export stores
    bf16_ppl = perplexity_of(model, tokenizer, text)
    merged = staging / ".bf16-source"
    save_folder(model, tokenizer, Path(record.path), merged)
    del model
    quantized = AutoModelForCausalLM.from_pretrained(
        str(merged), dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    quantized.save_pretrained(str(staging), safe_serialization=True)
    tokenizer.save_pretrained(str(staging))
    for extra in merged.iterdir():
        if not (staging / extra.name).exists():
            shutil.copy2(extra, staging / extra.name)
    shutil.rmtree(merged)
    reloaded = AutoModelForCausalLM.from_pretrained(str(staging), device_map="cpu")
    int8_bytes = folder_bytes(staging, "*.safetensors")
    int8_ppl = perplexity_of(reloaded, tokenizer, text)
    return {"bytes": int8_bytes, "bf16_bytes": bf16_bytes, "size_ratio": int8_bytes / bf16_bytes,
            "perplexity": int8_ppl, "bf16_perplexity": bf16_ppl, "perplexity_change": relative_change(int8_ppl, bf16_ppl)}
