"""A vertical scroll that says when it hides something below the fold.

At 80x24 a form's last fields (a job's seed and LoRA settings, Evaluate's split and references, a dialog's
buttons) sit under the fold, and a thin scroll bar is easy to miss. While content is hidden below, the
bottom edge reads "more below": in the widget's own bottom border where it has one (dialogs), else on a
one-line edge that the `-more-below` class adds (styled in workbench.tcss)."""

from __future__ import annotations

from textual.containers import VerticalScroll

HINT = "▼ more below"


class HintedScroll(VerticalScroll):
    _pending = False

    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._schedule, init=False)
        self.watch(self, "virtual_size", self._schedule, init=False)
        self._schedule()

    def on_resize(self) -> None:
        self._schedule()

    def _schedule(self, *_) -> None:
        """Decide after the next refresh, once layout has settled (sizes read mid-layout are stale)."""
        if not self._pending:
            self._pending = True
            self.call_after_refresh(self._update_hint)

    def _update_hint(self) -> None:
        self._pending = False
        own_border = self._has_own_border()
        hidden = self.max_scroll_y - self.scroll_y
        if not own_border and self.has_class("-more-below"):
            hidden -= 1  # the edge we added takes a line: without it, one line less would be hidden
        hidden_below = hidden >= 1  # (else a form that just fits would keep the edge it caused)
        self.border_subtitle = HINT if hidden_below else ""
        if not own_border:
            self.set_class(hidden_below, "-more-below")

    def _has_own_border(self) -> bool:
        return bool(self.styles.border_bottom[0]) and not self.has_class("-more-below")
