"""The patch-attribution figure: one block per target, one row per patch.

Row "whole image" holds the unmasked scores of the same steps, for comparison. Each row shows
the target x0 with the patch outlined, then for each patch step the one-step estimate
x0hat_t (patch outlined) and the top-k positive influencers of f_t restricted to the patch
(green frames, strongest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from matplotlib.patches import Patch as LegendPatch  # noqa: E402

from stepattr.figures.influencers import TILE, X0HAT, TrainingImages, Trajectory  # noqa: E402
from stepattr.figures.tiles import BOX, POSITIVE, blank, draw_tile, stacked_figure  # noqa: E402

WHOLE_IMAGE = "whole image"


@dataclass(frozen=True)
class PatchRow:
    """One patch of one target (``box`` None: the whole image) and, per step, its top-k
    positive influencers (training indices, strongest first)."""

    name: str
    box: tuple[int, int, int, int] | None
    positive: Sequence[np.ndarray]


def _row_label(row: PatchRow) -> str:
    if row.box is None:
        return row.name
    return f"{row.name}\n[{', '.join(str(v) for v in row.box)}]"


def draw_patch_target(
    fig: Figure | SubFigure, target: Trajectory, rows: Sequence[PatchRow], train: TrainingImages
) -> None:
    """One target's block (see the module docstring); ``target.grid`` are the patch steps."""
    steps = list(target.grid)
    k = len(rows[0].positive[0])
    widths = [1.0]
    for _ in steps:
        widths += [0.3, 1.0] + [1.0] * k
    grid = fig.add_gridspec(
        len(rows),
        len(widths),
        width_ratios=widths,
        hspace=0.45,
        wspace=0.12,
        left=0.12,
        right=0.99,
        top=0.86,
        bottom=0.03,
    )
    for r, row in enumerate(rows):
        if len(row.positive) != len(steps):
            raise ValueError(
                f"{target.name}, {row.name}: {len(row.positive)} steps, expected {steps}"
            )
        ax = fig.add_subplot(grid[r, 0])
        draw_tile(ax, target.x0, box=row.box)
        ax.set_ylabel(_row_label(row), fontsize=9, rotation=0, ha="right", va="center")
        if r == 0:
            ax.set_title("target $x_0$", fontsize=9)
        col = 1
        for g, step in enumerate(steps):
            blank(fig.add_subplot(grid[r, col]))
            ax = fig.add_subplot(grid[r, col + 1])
            draw_tile(ax, target.x0hat[g], box=row.box)
            if r == 0:
                ax.set_title(f"{X0HAT}\nt = {step}", fontsize=9)
            for j, index in enumerate(row.positive[g]):
                ax = fig.add_subplot(grid[r, col + 2 + j])
                draw_tile(ax, train.images[int(index)], frame=POSITIVE)
                ax.set_xlabel(train.caption(int(index)), fontsize=7, labelpad=2)
                if r == 0:
                    ax.set_title(f"+{j + 1}", fontsize=9, color=POSITIVE)
            col += 2 + k
    fig.suptitle(target.name, fontsize=11, x=0.01, ha="left")


def patch_figure(
    blocks: Sequence[tuple[Trajectory, Sequence[PatchRow]]],
    train: TrainingImages,
    heading: str,
) -> Figure:
    """Blocks stacked under a heading and a legend."""
    if not blocks:
        raise ValueError("no patch targets to draw")
    steps = len(blocks[0][0].grid)
    k = len(blocks[0][1][0].positive[0])
    columns = 1 + steps * (1.3 + k)
    heights = [TILE * len(rows) * 1.45 + 0.5 for _, rows in blocks]
    width = max(TILE * columns * 1.15 + 1.4, 6.0)
    handles = [
        LegendPatch(
            facecolor="white",
            edgecolor=POSITIVE,
            lw=2.5,
            label="top positive influencer of f_t restricted to the patch (strongest first)",
        ),
        LegendPatch(facecolor="white", edgecolor=BOX, lw=2.5, label="patch (pixel box)"),
    ]
    fig, parts = stacked_figure(heading, handles, width, heights)
    for part, (target, rows) in zip(parts, blocks, strict=True):
        draw_patch_target(part, target, rows, train)
    return fig
