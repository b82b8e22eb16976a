"""Create, import and load checkpoints; tokenizer handling; device and dtype.

Model folders are plain Hugging Face `save_pretrained` folders (or PEFT adapter folders), always with
their own tokenizer files, so they load with plain transformers / peft too. One module per job:
names (names, file names, shapes), tokenizer, folders (weights, configs, staging, registering),
create (random models, the starter), manage (import, remove, rename), load (device, dtype, cache),
gguf (GGUF files to HF folders), starter (the SmolLM2 chat starter).
"""

from .adapters import is_adapter_folder, point_adapter_at_base
from .create import SUGGESTED_ARCHITECTURES, build_config, create_model, ensure_starter_model
from .folders import (_read_config, _register_folder, arch_of, context_of, count_parameters,
                      register_folder, staged_folder, weights_file, weights_sha256)
from .gguf import convert_gguf, import_gguf, is_gguf_file
from .load import LoadedModel, ModelCache, load_model_folder, resolve_device, resolve_dtype
from .manage import add_model, remove_model, rename_model
from .names import (ARCHITECTURES, PICKLE_WEIGHTS, STARTER_MODEL, STARTER_SHAPE, WEIGHT_FILES,
                    ModelShape, one_line, validate_name)
from .names import one_line as _one_line
from .starter import CHAT_STARTER, INSTALL_HINT, ensure_chat_starter, smollm2_gguf
from .tokenizer import load_tokenizer, quiet_transformers, write_gpt2_tokenizer_files

__all__ = [
    "SUGGESTED_ARCHITECTURES", "is_adapter_folder", "point_adapter_at_base", "CHAT_STARTER", "INSTALL_HINT", "convert_gguf", "ensure_chat_starter", "import_gguf", "is_gguf_file",
    "smollm2_gguf", "ARCHITECTURES", "PICKLE_WEIGHTS", "STARTER_MODEL", "STARTER_SHAPE", "WEIGHT_FILES",
    "LoadedModel", "ModelCache", "ModelShape", "add_model", "arch_of", "build_config", "context_of",
    "count_parameters", "create_model", "ensure_starter_model", "load_model_folder",
    "load_tokenizer", "one_line", "quiet_transformers", "register_folder", "remove_model", "rename_model",
    "resolve_device", "resolve_dtype", "staged_folder", "validate_name", "weights_file", "weights_sha256",
    "write_gpt2_tokenizer_files", "_one_line", "_read_config", "_register_folder",
]
