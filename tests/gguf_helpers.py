"""A tiny but real GGUF file (llama architecture, byte-level BPE tokenizer, ChatML template), written with
the `gguf` package, so GGUF import tests run in seconds instead of converting the 98 MB SmolLM2 file."""

from __future__ import annotations

from pathlib import Path

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: one token per byte, as byte-level BPE vocabularies spell them."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for _byte, code in sorted(zip(printable, codes))]


def write_tiny_gguf(path: Path, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                    ffn: int = 128, context: int = 256, seed: int = 0) -> Path:
    import gguf
    import numpy as np

    tokens = list(SPECIALS) + _byte_tokens() + ["Ġt", "he", "Ġthe"]
    merges = ["Ġ t", "h e", "Ġt he"]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))  # 3 = control, 1 = normal
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    rng = np.random.default_rng(seed)
    kv = kv_heads * (hidden // heads)

    def tensor(name: str, *shape: int) -> None:
        values = np.ones(shape, np.float32) if len(shape) == 1 else rng.normal(0, 0.02, shape).astype(np.float32)
        writer.add_tensor(name, values)

    tensor("token_embd.weight", len(tokens), hidden)
    for block in range(layers):
        tensor(f"blk.{block}.attn_norm.weight", hidden)
        tensor(f"blk.{block}.attn_q.weight", hidden, hidden)
        tensor(f"blk.{block}.attn_k.weight", kv, hidden)
        tensor(f"blk.{block}.attn_v.weight", kv, hidden)
        tensor(f"blk.{block}.attn_output.weight", hidden, hidden)
        tensor(f"blk.{block}.ffn_norm.weight", hidden)
        tensor(f"blk.{block}.ffn_gate.weight", ffn, hidden)
        tensor(f"blk.{block}.ffn_up.weight", ffn, hidden)
        tensor(f"blk.{block}.ffn_down.weight", hidden, ffn)
    tensor("output_norm.weight", hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
