"""Train and validation loss against step, on textual-plot's PlotWidget, with a log-scale toggle.

Points are appended as they arrive from the registry; the plot is redrawn only when there are new ones.
The title (which job) and the legend live in the border, outside the plot area, so they never cover the
curves; `reset` starts a new job with fresh, autoscaled axes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter, NumericAxisFormatter


class LogAxisFormatter(AxisFormatter):
    """Ticks on log10(y), labelled with y itself."""

    def __init__(self) -> None:
        self._linear = NumericAxisFormatter()

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        if max_ - min_ >= 1.0:  # a decade or more: 1, 10, 100, ... (with 2 and 5 when few)
            mantissas = (1,) if max_ - min_ > 3 else (1, 2, 5)
            ticks = [math.log10(m * 10 ** d) for d in range(math.floor(min_), math.ceil(max_) + 1)
                     for m in mantissas]
        else:  # within about a decade: round values of the loss itself
            ticks = [math.log10(v) for v in self._linear.get_ticks(10 ** min_, 10 ** max_, max_ticks) if v > 0]
        return [t for t in ticks if min_ <= t <= max_]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [f"{10 ** t:.3g}" for t in ticks]


class LossChart(PlotWidget):
    """`add(rows)` with MetricRecord-like rows (step, split, loss); `log_scale` toggles the y axis."""

    def __init__(self, **kwargs):
        super().__init__(allow_pan_and_zoom=True, **kwargs)
        self.points: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}
        self.log_scale = False

    def on_mount(self) -> None:
        self.set_xlabel("step")
        self.border_title = "Loss"
        self.redraw()

    def reset(self, title: str = "Loss") -> None:
        """A new job: no points, autoscaled axes (not the last job's, nor a zoom), its own title."""
        self.points = {"train": [], "val": []}
        self.border_title = title
        self.set_xlimits(None, None)
        self.set_ylimits(None, None)
        self.redraw()

    def add(self, rows: Iterable) -> int:
        """Append rows; returns how many points were new (0: nothing to redraw)."""
        added = 0
        for row in rows:
            if row.split in self.points and row.loss is not None and math.isfinite(row.loss):
                self.points[row.split].append((row.step, row.loss))
                added += 1
        if added:
            self.redraw()
        return added

    @property
    def count(self) -> int:
        return sum(len(points) for points in self.points.values())

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self.redraw()

    def _y(self, loss: float) -> float:
        return math.log10(loss) if self.log_scale else loss

    def redraw(self) -> None:
        theme = self.app.current_theme
        self.clear()
        self.set_ylabel("log" if self.log_scale else "")
        self.set_y_formatter(LogAxisFormatter() if self.log_scale else NumericAxisFormatter())
        styles = {"train": theme.primary, "val": theme.warning or theme.accent or "yellow"}
        for split in ("train", "val"):
            points = [(s, v) for s, v in self.points[split] if v > 0 or not self.log_scale]
            if not points:
                continue
            xs = [s for s, _ in points]
            ys = [self._y(v) for _, v in points]
            if split == "val":
                self.scatter(xs, ys, marker="●", marker_style=styles[split], label="val")
                if len(points) > 1:
                    self.plot(xs, ys, line_style=styles[split], hires_mode=HiResMode.BRAILLE)
            else:
                self.plot(xs, ys, line_style=styles[split], hires_mode=HiResMode.BRAILLE, label="train")
        self.show_legend(is_visible=False)
        legend = []
        if self.points["train"]:
            legend.append(f"[{styles['train']}]━ train[/]")
        if self.points["val"]:
            legend.append(f"[{styles['val']}]● val[/]")
        self.border_subtitle = "  ".join(legend)
