"""The report's figure plumbing: a matplotlib figure on an Agg canvas, and its PNG as a `data:` URI.

The object API on an Agg canvas never switches the backend of a notebook that draws a report;
PNGs carry no software/version metadata, so the same evaluation gives the same bytes.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from typing import Any

__all__ = ["MISSING", "figure", "no_data", "png", "require"]

MISSING = "the HTML report draws its plots with matplotlib: pip install 'logstore[report]'"


def require() -> None:
    """Raise ImportError (saying which extra to install) when matplotlib is not installed: what a
    command that ends in a report calls before it starts its work."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(MISSING)


def figure(size: tuple[float, float] = (7.5, 3.6)) -> tuple[Any, Any]:
    """(figure, axes) of one plot, on its own Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(MISSING) from exc
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def png(fig: Any) -> str:
    """The figure as a PNG `data:` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def no_data(ax: Any, message: str) -> None:
    """Say why a plot is empty instead of leaving it out."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])
