"""The app's six modes: key, title and the screen class that shows each (imported when first shown)."""

from __future__ import annotations

# mode name -> (key, title, "module:Class" under workbench.tui.screens)
MODES_SPEC: dict[str, tuple[str, str, str]] = {
    "models": ("1", "Models", "models:ModelsScreen"),
    "data": ("2", "Data", "data:DataScreen"),
    "train": ("3", "Train", "train:TrainScreen"),
    "chat": ("4", "Chat", "chat:ChatScreen"),
    "dialogue": ("5", "Dialogue", "dialogue:DialogueScreen"),
    "evaluate": ("6", "Evaluate", "evaluate:EvaluateScreen"),
}
