"""Recall@K curves (K = 1 … 100) as a PNG, one panel per direction, one line per protocol/split.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state, no display needed).
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hrem.utils.files import atomic_path

X_TICKS = (1, 2, 5, 10, 20, 50, 100)
PANELS = (("i2t", "image → text (annotation)"), ("t2i", "text → image (search)"))


def plot_recall_curves(path: str | Path, curves: dict[str, dict[str, list[float]]], title: str = "") -> Path:
    """Write `curves` = {label: {"i2t": [R@1 …], "t2i": [R@1 …]}} to `path` (PNG, atomically)."""
    if not curves:
        raise ValueError(f"{path}: expected at least one recall curve to plot, found none")
    figure = Figure(figsize=(11, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, (direction, panel_title) in zip(axes, PANELS):
        for label, curve in curves.items():
            values = curve[direction]
            ax.plot(range(1, len(values) + 1), values, label=label, linewidth=1.6)
        for k in (1, 5, 10):
            ax.axvline(k, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_xticks(X_TICKS, [str(k) for k in X_TICKS])
        ax.set_xlim(1, max(len(c[direction]) for c in curves.values()))
        ax.set_ylim(0, 100)
        ax.set_xlabel("K (log scale)")
        ax.set_title(panel_title)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("R@K (%)")
    axes[1].legend(loc="lower right", fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
