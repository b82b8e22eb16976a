"""Exports of a registered model, each verified by loading the result back in its target runtime.

merged / fp16 / bf16 / int8 write Hugging Face folders (hf.py), onnx an onnxruntime graph (onnx.py), gguf a
llama.cpp / Ollama file with a Modelfile (gguf.py). The output is staged beside its target and renamed into
place only once verified. Every export is recorded in the registry: in the source model's meta["exports"]
(format, path, figures) and, with `register`, as a new model whose parent is the source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import WorkbenchError
from ..registry import now_iso

FORMATS = ("merged", "fp16", "bf16", "int8", "onnx", "gguf")
HF_FORMATS = ("merged", "fp16", "bf16", "int8")  # folders that transformers loads (and the registry takes)


@dataclass
class ExportResult:
    model: str
    format: str
    path: str
    checks: dict = field(default_factory=dict)
    registered: str | None = None
    created_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict:
        return asdict(self)


def _run(registry, record, fmt: str, staging: Path, text: str, gguf_type: str) -> dict:
    if fmt in ("merged", "fp16", "bf16"):
        from .hf import export_dtype

        return export_dtype(registry, record, fmt, staging, text)
    if fmt == "int8":
        from .hf import export_int8

        return export_int8(registry, record, staging, text)
    if fmt == "onnx":
        from .onnx import export_onnx

        return export_onnx(registry, record, staging, text)
    from .gguf import export_gguf

    return export_gguf(registry, record, staging, text, gguf_type)


def export_model(ctx, name: str, fmt: str, out: str | Path | None = None, register: str | None = None,
                 verify_text: str | None = None, gguf_type: str = "q8_0") -> ExportResult:
    """Write `name` in `fmt` to `out` (default: models/REGISTER when registering), verify it, record it."""
    from ..models import register_folder, staged_folder, validate_name
    from .checks import verify_text as read_verify_text

    registry = ctx.registry
    record = registry.get_model(name)
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    if register:
        validate_name(register)
        if fmt not in HF_FORMATS:
            raise WorkbenchError(f"--register works for {', '.join(HF_FORMATS)} (folders the workbench loads); "
                                 f"a {fmt} export is recorded on '{name}' instead")
        if registry.find_model(register):
            raise WorkbenchError(f"a model named '{register}' is already registered")
    if out is None:
        if not register:
            raise WorkbenchError("give --out DIR (or --register NAME to export into the workspace)")
        out = ctx.ws.model_dir(register)
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkbenchError(f"{target} already exists and is not empty; pick another --out")
    if target.exists():
        target.rmdir()
    text = read_verify_text(verify_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(target) as staging:
        checks = _run(registry, record, fmt, staging, text, gguf_type)
    result = ExportResult(name, fmt, str(target), checks)
    if register:
        inside = target.parent == ctx.ws.models_dir
        register_folder(registry, register, target, source="exported", parent=name, referenced=not inside,
                        meta={"export": {"format": fmt, "from": name, "checks": checks}})
        result.registered = register
    exports = list(record.meta.get("exports", [])) + [result.to_dict()]
    registry.update_model(name, meta={**record.meta, "exports": exports})
    return result
