"""A trained model's card: README.md in its folder, YAML front matter (the resolved settings, written with
the long flag names so the block can be fed back to `workbench train --config`) and a short body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CARD_FILE = "README.md"


def card_settings(config) -> dict[str, Any]:
    """The resolved training settings keyed by long flag name (model, data, lora-r, keep, ...)."""
    from .settings_file import flag_name

    return {flag_name(name): value for name, value in config.to_dict().items()}


def card_text(config, meta: dict, base_name: str) -> str:
    import yaml

    front = {
        "model": config.out, "base_model": base_name, "dataset": config.dataset,
        "objective": config.objective, "method": config.method, "steps_done": meta.get("steps"),
        "final_train_loss": meta.get("final_train_loss"), "final_val_loss": meta.get("final_val_loss"),
        "library_name": "transformers" if not (config.method == "lora" and not config.merge) else "peft",
        "settings": card_settings(config),
    }
    what = {"causal": f"causal language modelling on `{config.dataset}`",
            "instruct": f"instruction tuning on `{config.dataset}` (loss on the responses only)",
            "kl-letter": f"the KL objective toward tokens containing '{config.letter}' "
                         f"({config.kl_positions} positions)"}.get(config.objective, config.objective)
    loss = meta.get("final_train_loss")
    body = [f"# {config.out}", "",
            f"Fine-tuned from `{base_name}` with {what}, method {config.method}, "
            f"{meta.get('steps')} steps at batch {config.batch} x seq {config.seq}"
            + (f"; final training loss {loss:.4f}." if isinstance(loss, (int, float)) else "."), "",
            "Made with workbench. To train it again: save the `settings` block above as a YAML file and run "
            "`workbench train --config FILE.yaml` (flags on the command line override it).", ""]
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)


def write_model_card(folder: str | Path, config, meta: dict, base_name: str) -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(card_text(config, meta, base_name), encoding="utf-8")
    return path


def read_model_card(folder: str | Path) -> dict:
    """The card's front matter ({} when there is no card or it has none)."""
    import yaml

    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        data = yaml.safe_load(text[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
