"""PEFT adapter folders and their base model.

The registry tracks an adapter's base by its registry name (`parent`, renamed with the base), which is
what the workbench loads. For plain peft (`AutoPeftModelForCausalLM.from_pretrained(folder)`) the
adapter's own adapter_config.json must name a loadable base folder, so `base_model_name_or_path` is kept
pointing at the base's current folder: when the adapter is registered and whenever its base moves."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import WorkbenchError
from .names import one_line

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def point_adapter_at_base(adapter_folder: str | Path, base_folder: str | Path) -> None:
    """Set the adapter's base_model_name_or_path to the base folder's absolute path (atomic rewrite)."""
    path = Path(adapter_folder) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WorkbenchError(f"{path}: unreadable adapter config ({one_line(error)})") from None
    base = str(Path(base_folder).resolve())
    if config.get("base_model_name_or_path") == base:
        return
    config["base_model_name_or_path"] = base
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)
