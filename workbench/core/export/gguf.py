"""GGUF export for Llama-family models (f16 or q8_0), written with the `gguf` package, plus an Ollama Modelfile.

The layout follows llama.cpp's convert_hf_to_gguf.py for LlamaModel: tensor names from gguf's
TensorNameMap, q_proj/k_proj rows permuted to llama.cpp's rotary layout, norms kept in f32, the llama.*
hyper-parameters, and the byte-level BPE tokenizer ("gpt2" model: tokens, types, merges, special ids,
chat template). The file is checked by loading it back with transformers' GGUF loader.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import WorkbenchError
from .checks import perplexity_of, relative_change
from .hf import load_source

LLAMA_TYPES = ("llama",)
GGUF_TYPES = ("f16", "q8_0")


def check_supported(registry, record) -> None:
    base = registry.get_model(record.parent) if record.adapter else record
    config = json.loads((Path(base.path) / "config.json").read_text())
    if config.get("model_type") not in LLAMA_TYPES:
        raise WorkbenchError(f"--format gguf supports Llama-family models (model_type llama, e.g. SmolLM2); "
                             f"'{record.name}' is {config.get('model_type')}: use merged, fp16, bf16, int8 or onnx")
    if config.get("rope_scaling"):
        raise WorkbenchError("--format gguf does not write rope scaling (Llama 3.1-style) yet; "
                             "use fp16, bf16, int8 or onnx")
    if not (Path(base.path) / "tokenizer.json").exists() and not (Path(record.path) / "tokenizer.json").exists():
        raise WorkbenchError("--format gguf needs a byte-level BPE tokenizer (tokenizer.json)")


def _permute(weights, heads: int, kv_heads: int | None):
    """convert_hf_to_gguf's LlamaModel.permute: HF's rotary halves -> llama.cpp's interleaved pairs."""
    if kv_heads is not None and heads != kv_heads:
        heads = kv_heads
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's pre-tokenizer name (it splits text before BPE); the families we can tell apart."""
    text = json.dumps(tokenizer_json.get("pre_tokenizer") or {})
    if '"Digits"' in text and '"individual_digits": true' in text:
        return "smollm"
    if "\\\\p{N}{1,3}" in text:
        return "llama-bpe"
    return "gpt-2" if '"ByteLevel"' in text else "default"


def _write_tokenizer(writer, tokenizer) -> None:
    import gguf

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, index in vocab.items():
        tokens[index] = text
        types[index] = gguf.TokenType.NORMAL
    for added in data.get("added_tokens", []):
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(data))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, value in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                       ("unk", tokenizer.unk_token_id), ("pad", tokenizer.pad_token_id)):
        if value is not None:
            getattr(writer, f"add_{key}_token_id")(value)
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def write_gguf(model, tokenizer, path: Path, kind: str, name: str) -> None:
    import gguf
    import numpy as np

    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or
                                    (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    quant = gguf.GGMLQuantizationType.Q8_0 if kind == "q8_0" else gguf.GGMLQuantizationType.F16
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if kind == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _write_tokenizer(writer, tokenizer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reads the embedding as the head when output.weight is absent
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        data = tensor.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, heads, kv_heads)
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise WorkbenchError(f"--format gguf: no GGUF name for tensor {hf_name}")
        if data.ndim == 1 or (quant == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32):
            writer.add_tensor(gguf_name, data.astype(np.float32))
        elif quant == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_gguf(registry, record, staging: Path, text: str, kind: str = "q8_0") -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    if kind not in GGUF_TYPES:
        raise WorkbenchError(f"unknown GGUF type '{kind}': use {' or '.join(GGUF_TYPES)}")
    check_supported(registry, record)
    model, tokenizer, _ = load_source(registry, record, "fp32")
    filename = f"{record.name}-{kind}.gguf"
    write_gguf(model, tokenizer, staging / filename, kind, record.name)
    from .modelfile import write_modelfile

    write_modelfile(staging, filename, tokenizer)
    source_ppl = perplexity_of(model, tokenizer, text)
    try:
        reloaded = AutoModelForCausalLM.from_pretrained(str(staging), gguf_file=filename, dtype=torch.float32)
    except Exception as error:  # noqa: BLE001 - the loader's errors vary; the export is not kept
        raise WorkbenchError(f"transformers could not load the GGUF back: {error}") from None
    gguf_ppl = perplexity_of(reloaded.eval(), tokenizer, text)
    return {"file": filename, "type": kind, "bytes": (staging / filename).stat().st_size,
            "perplexity": gguf_ppl, "source_perplexity": source_ppl,
            "perplexity_change": relative_change(gguf_ppl, source_ppl)}
