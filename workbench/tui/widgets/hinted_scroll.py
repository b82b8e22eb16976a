"""A vertical scroll that says when it hides something below the fold.

At 80x24 a form's last fields (a job's seed and LoRA settings, Evaluate's split and references, a dialog's
buttons) sit under the fold, and a thin scroll bar is easy to miss. While content is hidden below, the
bottom edge reads "more below": in the widget's own bottom border where it has one (dialogs), else on a
one-line edge that the `-more-below` class adds (styled in workbench.tcss)."""

from __future__ import annotations

from textual.containers import VerticalScroll

HINT = "▼ more below"


class HintedScroll(VerticalScroll):
    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._update_hint, init=False)
        self.watch(self, "virtual_size", self._update_hint, init=False)
        self.call_after_refresh(self._update_hint)

    def on_resize(self) -> None:
        self._update_hint()

    def _update_hint(self, *_) -> None:
        hidden_below = self.max_scroll_y - self.scroll_y >= 1
        self.border_subtitle = HINT if hidden_below else ""
        if not self._has_own_border():
            self.set_class(hidden_below, "-more-below")

    def _has_own_border(self) -> bool:
        return bool(self.styles.border_bottom[0]) and not self.has_class("-more-below")
