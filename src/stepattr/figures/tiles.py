"""Images as figure tiles: nearest-neighbour (a 16x16 digit stays crisp), optional frame and box.

Frames mark the sign of an influencer: green = positive (including the training image lowers
the target's output function f_t, it pushes the model toward the target), red = negative.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import SubFigure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

POSITIVE = "#1a9641"
NEGATIVE = "#d7191c"
BOX = "#ffd400"
FRAME_WIDTH = 3.5  # points
HEADING_CHARS_PER_INCH = 11  # at fontsize 10: where a heading line is wrapped
LINE_INCHES = 0.22  # height of one heading or legend line


def display_array(image: np.ndarray) -> np.ndarray:
    """One stored image (C, H, W) -> what imshow draws: (H, W) gray or (H, W, 3), in [0, 1].

    uint8 images (dataset splits) are scaled by 1/255; float images (targets) are model space
    [-1, 1] and clipped.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image (C, H, W) with C in {{1, 3}}, got {image.shape}")
    if image.dtype == np.uint8:
        shown = image.astype(np.float32) / 255.0
    else:
        shown = np.clip((image.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)
    return shown[0] if shown.shape[0] == 1 else shown.transpose(1, 2, 0)


def draw_tile(
    ax: plt.Axes,
    image: np.ndarray,
    frame: str | None = None,
    box: Sequence[int] | None = None,
) -> None:
    """Draw ``image`` on ``ax`` without ticks; ``frame`` colours the border, ``box`` =
    [x0, y0, x1, y1] outlines pixels x0..x1-1, y0..y1-1."""
    ax.imshow(display_array(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(FRAME_WIDTH)
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=BOX, lw=2)
        )


def blank(ax: plt.Axes) -> None:
    """An empty cell of a tile grid."""
    ax.set_axis_off()


def sign_legend() -> list[Patch]:
    """Legend handles explaining the frame colours."""
    return [
        Patch(
            facecolor="white",
            edgecolor=POSITIVE,
            lw=2.5,
            label="positive influencer: training on it lowers f_t (pulls toward the target)",
        ),
        Patch(
            facecolor="white",
            edgecolor=NEGATIVE,
            lw=2.5,
            label="negative influencer: training on it raises f_t (pushes away)",
        ),
    ]


def wrap_heading(heading: str, width_inches: float, legend_lines: int) -> tuple[str, float]:
    """The heading wrapped to the figure width, and the height (inches) it and a legend of
    ``legend_lines`` lines need above the panels."""
    text = textwrap.fill(heading, max(40, int(width_inches * HEADING_CHARS_PER_INCH)))
    lines = text.count("\n") + 1
    return text, 0.2 + LINE_INCHES * (lines + legend_lines)


def draw_header(fig: SubFigure, text: str, handles: Sequence[Patch]) -> None:
    """Heading text at the top of ``fig``, the legend below it."""
    fig.text(0.01, 0.97, text, fontsize=10, ha="left", va="top")
    fig.legend(handles=handles, loc="lower left", fontsize=9, frameon=False, ncol=1)


def stacked_figure(
    heading: str, handles: Sequence[Patch], width: float, heights: Sequence[float]
) -> tuple[plt.Figure, list[SubFigure]]:
    """A figure of ``width`` inches: the wrapped heading and legend on top, then one subfigure
    per entry of ``heights`` (inches), returned for the caller to draw into."""
    text, header = wrap_heading(heading, width, len(handles))
    fig = plt.figure(figsize=(width, header + sum(heights)))
    parts = fig.subfigures(
        1 + len(heights), 1, height_ratios=[header, *heights], hspace=0.0, squeeze=False
    )[:, 0]
    draw_header(parts[0], text, handles)
    return fig, list(parts[1:])
