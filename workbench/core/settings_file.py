"""Training settings written the way the command line spells them: `train --config FILE.yaml` and recipe
train steps. Keys are the long flag names (`model`, `data`, `lora-r` or `lora_r`, `keep`, ...); they map
onto TrainConfig fields here, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import WorkbenchError

# Long flags whose TrainConfig field has another name.
FLAG_FIELDS = {"model": "base_model", "data": "dataset", "keep": "keep_checkpoints"}


def flag_name(field_name: str) -> str:
    """The long flag (without dashes) of a TrainConfig field: base_model -> model, lora_r -> lora-r."""
    for flag, target in FLAG_FIELDS.items():
        if target == field_name:
            return flag
    return field_name.replace("_", "-")


def config_fields(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """{TrainConfig field: value} from {long flag name: value}; an unknown key is a one-line error."""
    from .training.config import TrainConfig

    known = set(TrainConfig.__dataclass_fields__)
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = str(key).lstrip("-")
        field_name = FLAG_FIELDS.get(name, name.replace("-", "_"))
        if field_name not in known:
            flags = ", ".join(sorted(flag_name(f) for f in known))
            raise WorkbenchError(f"{where}: unknown training setting '{key}' (known: {flags})")
        out[field_name] = value
    if isinstance(out.get("freeze"), str):
        out["freeze"] = [out["freeze"]]
    return out


def load_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, with a syntax error as one line: "WHERE: not valid YAML at line N"."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise WorkbenchError(f"{where}: not valid YAML{at}") from None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) settings file; errors are one line naming the file."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"cannot read {file}: {getattr(error, 'strerror', None) or error}") from None
    data = load_yaml(text, str(file))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WorkbenchError(f"{file}: expected a mapping of setting: value (long flag names as keys)")
    return data


def config_from_file(path: str | Path) -> dict[str, Any]:
    """{TrainConfig field: value} of a settings file."""
    return config_fields(read_settings_file(path), str(path))
