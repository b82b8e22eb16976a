"""Fast batch-1 decoding (chat, generate, dialogue): a kept KV cache, prefix reuse across turns, no
per-token overhead of transformers' `generate`. torch is imported inside functions only."""

from .loop import Decoder, decoder_for, end_token_ids, fast_path_unavailable

__all__ = ["Decoder", "decoder_for", "end_token_ids", "fast_path_unavailable"]
