"""Checkboxes and check lists that say on/off plainly: a ✓ when on, a blank box when off (Textual's own
draw an X in both states and tell them apart by colour alone, which a terminal may not show)."""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList

ON, OFF = "✓", " "


class Tick(Checkbox):
    """A Checkbox drawn with ✓ when checked. `on_text` / `off_text`, when given, follow the label."""

    def __init__(self, label: str, value: bool = False, on_text: str = "", off_text: str = "", **kwargs):
        self._base_label = label
        self._texts = (on_text, off_text)
        super().__init__(self._label_for(value), value, **kwargs)

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - the name ToggleButton reads
        return ON if self.value else OFF

    def _label_for(self, value: bool) -> str:
        extra = self._texts[0] if value else self._texts[1]
        return f"{self._base_label}: {extra}" if extra else self._base_label

    def watch_value(self) -> None:
        self.label = self._label_for(self.value)


class CheckList(SelectionList):
    """A SelectionList whose selected items carry a ✓ and unselected ones a blank box."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        index = self.scroll_offset.y + y
        if len(segments) < 3 or index >= self.option_count:
            return strip
        selected = self.get_option_at_index(index).value in self._selected
        inner = segments[1]
        segments[1] = Segment(ON if selected else OFF, inner.style)
        return Strip(segments, strip.cell_length)
