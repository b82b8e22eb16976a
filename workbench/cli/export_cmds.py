"""`workbench export MODEL --format merged|fp16|bf16|int8|onnx|gguf --out DIR [--register NAME]`."""

from __future__ import annotations

from .common import add_json_flag, command, context, emit, info


def register(subcommands) -> None:
    parser = command(subcommands, "export", cmd_export,
                     "write a model as a merged/fp16/bf16/int8 folder, ONNX or GGUF, verified by loading it back")
    parser.add_argument("model")
    parser.add_argument("--format", required=True, choices=["merged", "fp16", "bf16", "int8", "onnx", "gguf"],
                        help="merged: adapter folded into its base; fp16/bf16: safetensors in that dtype; "
                             "int8: torchao int8 weights; onnx: onnxruntime graph; gguf: llama.cpp/Ollama")
    parser.add_argument("--out", metavar="DIR", help="output folder (must not exist or be empty)")
    parser.add_argument("--register", metavar="NAME",
                        help="also register the result as a model (merged, fp16, bf16, int8); default --out "
                             "is then models/NAME")
    parser.add_argument("--gguf-type", default="q8_0", choices=["q8_0", "f16"], help="GGUF weights (default q8_0)")
    parser.add_argument("--verify-text", metavar="FILE",
                        help="UTF-8 text for the perplexity checks (default: a built-in paragraph)")
    add_json_flag(parser)


def _render(result) -> str:
    lines = [f"exported '{result['model']}' as {result['format']} to {result['path']}"]
    for key, value in result["checks"].items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        lines.append(f"  {key:<26} {shown}")
    if result["registered"]:
        lines.append(f"registered as '{result['registered']}'")
    return "\n".join(lines)


def cmd_export(args) -> int:
    from ..core.export import export_model

    ctx = context(args)
    info(f"exporting '{args.model}' as {args.format} (verified by loading it back)...")
    result = export_model(ctx, args.model, args.format, args.out, args.register, args.verify_text, args.gguf_type)
    emit(args, result.to_dict(), _render)
    return 0
