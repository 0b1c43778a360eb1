"""Influencers per denoising step, after the blog's CIFAR-10 figures (journey-TRAK).

For one target, each column is a grid step t (sampling order: high t to 0): on top the latent
x_t and the one-step estimate x0hat_t, below the top-k positive influencers (green frames,
strongest first) and the top-k negative ones (red frames), i.e. the training images with the
highest and the lowest scores tau(x0hat_t, z_i) of that step. The overview stacks several
targets; the animation shows one step per frame.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from PIL import Image  # noqa: E402

from stepattr.core.io import atomic_path  # noqa: E402
from stepattr.figures.tiles import (  # noqa: E402
    NEGATIVE,
    POSITIVE,
    blank,
    draw_tile,
    sign_legend,
    stacked_figure,
    wrap_heading,
)
from stepattr.transitions.feature_attribution import top_influencers  # noqa: E402

TILE = 0.8  # inches per image tile
CAPTION_WIDTH = 18  # characters per caption line under a tile
X0HAT = r"$\hat{x}_0(x_t)$"


@dataclass(frozen=True)
class Trajectory:
    """One target: its final image and, per grid step, the latent and the one-step estimate."""

    name: str
    x0: np.ndarray  # (C, H, W), model space [-1, 1]
    x_t: np.ndarray  # (G, C, H, W)
    x0hat: np.ndarray  # (G, C, H, W)
    grid: tuple[int, ...]


@dataclass(frozen=True)
class TrainingImages:
    """The training split as stored (uint8), to draw influencers by index."""

    images: np.ndarray  # (n, C, H, W) uint8
    labels: np.ndarray  # (n,)
    class_names: Sequence[str]
    captions: Sequence[Sequence[str]] | None = None  # each image's captions (text-to-image)

    @property
    def row_gap(self) -> float:
        """Space between influencer rows, in tile heights: room for the tiles' labels."""
        return 0.42 if self.captions is None else 0.8

    def caption(self, index: int) -> str:
        """What goes under an influencer tile: its row in the training split and its first
        caption (two short lines at most) where the dataset is captioned, else its class."""
        if self.captions is None:
            return f"{self.class_names[int(self.labels[index])]} #{index}"
        lines = textwrap.wrap(self.captions[index][0], CAPTION_WIDTH) or [""]
        shown = lines[:2] if len(lines) <= 2 else [lines[0], lines[1] + " ..."]
        return "\n".join([f"#{index}", *shown])


@dataclass(frozen=True)
class StepInfluencers:
    """Top-k training indices of one step, strongest first."""

    step: int
    positive: np.ndarray
    negative: np.ndarray


def step_influencers(scores: np.ndarray, grid: Sequence[int], k: int) -> list[StepInfluencers]:
    """Per grid step, the k highest- and k lowest-scoring training examples.

    ``scores`` (G, n) are one target's scores, rows in ``grid`` order.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(grid):
        raise ValueError(f"scores {scores.shape} do not match the grid {list(grid)}")
    return [
        StepInfluencers(int(step), *top_influencers(row, k))
        for step, row in zip(grid, scores, strict=True)
    ]


def _check(target: Trajectory, steps: Sequence[StepInfluencers]) -> None:
    if [s.step for s in steps] != list(target.grid):
        raise ValueError(
            f"{target.name}: influencer steps {[s.step for s in steps]} differ from its grid "
            f"{list(target.grid)}"
        )


def _influencer(ax: plt.Axes, train: TrainingImages, index: int, color: str) -> None:
    draw_tile(ax, train.images[index], frame=color)
    ax.set_xlabel(train.caption(index), fontsize=7 if train.captions is None else 5.5, labelpad=2)


def draw_target(
    fig: Figure | SubFigure,
    target: Trajectory,
    steps: Sequence[StepInfluencers],
    train: TrainingImages,
) -> None:
    """One target's block: the target, then a column per step (see the module docstring)."""
    _check(target, steps)
    k = len(steps[0].positive)
    heights = [1, 1, 0.02] + [1] * k + [0.02] + [1] * k
    grid = fig.add_gridspec(
        len(heights),
        2 + len(steps),
        height_ratios=heights,
        width_ratios=[1.6, 0.3] + [1] * len(steps),
        hspace=train.row_gap,
        wspace=0.25,
        left=0.02,
        right=0.99,
        top=0.92,
        bottom=0.03,
    )
    ax = fig.add_subplot(grid[0:2, 0])
    draw_tile(ax, target.x0)
    ax.set_title("target $x_0$", fontsize=10)
    for row0, color, sign in ((3, POSITIVE, "positive"), (4 + k, NEGATIVE, "negative")):
        ax = fig.add_subplot(grid[row0 : row0 + k, 0])
        blank(ax)
        ax.text(0.5, 0.5, f"top {k}\n{sign}", color=color, fontsize=11, ha="center", va="center")
    for g, step in enumerate(steps):
        latent = fig.add_subplot(grid[0, 2 + g])
        draw_tile(latent, target.x_t[g])
        latent.set_title(f"t = {step.step}", fontsize=10)
        estimate = fig.add_subplot(grid[1, 2 + g])
        draw_tile(estimate, target.x0hat[g])
        if g == 0:
            latent.set_ylabel("$x_t$", fontsize=11, labelpad=6)
            estimate.set_ylabel(X0HAT, fontsize=11, labelpad=6)
        for row0, color, indices in (
            (3, POSITIVE, step.positive),
            (4 + k, NEGATIVE, step.negative),
        ):
            for j, index in enumerate(indices):
                ax = fig.add_subplot(grid[row0 + j, 2 + g])
                _influencer(ax, train, int(index), color)
                if g == 0:
                    sign = "+" if color == POSITIVE else "\u2212"
                    ax.set_ylabel(f"{sign}{j + 1}", fontsize=10, color=color)
    fig.suptitle(target.name, fontsize=11, x=0.02, ha="left")


def influencer_figure(
    blocks: Sequence[tuple[Trajectory, Sequence[StepInfluencers]]],
    train: TrainingImages,
    heading: str,
) -> Figure:
    """One block per target, stacked, under a heading and the frame legend."""
    if not blocks:
        raise ValueError("no targets to draw")
    columns = 1.9 + len(blocks[0][1])
    k = len(blocks[0][1][0].positive)
    block_height = TILE * (2.04 + 2 * k) * (1 + train.row_gap) + 0.3
    width = max(TILE * columns * 1.2 + 0.5, 6.0)
    fig, parts = stacked_figure(heading, sign_legend(), width, [block_height] * len(blocks))
    for part, (target, steps) in zip(parts, blocks, strict=True):
        draw_target(part, target, steps, train)
    return fig


def animation_frame(
    target: Trajectory,
    g: int,
    step: StepInfluencers,
    train: TrainingImages,
    heading: str,
) -> np.ndarray:
    """One GIF frame (H, W, 3) uint8: the target, x_t and x0hat_t at grid step ``g``, and
    that step's top positive and negative influencers; a bar marks t on the sampling path."""
    k = len(step.positive)
    columns = max(3, k)
    width, panels = TILE * 1.25 * columns + 1.2, 5.4
    text, _ = wrap_heading(f"{target.name}. {heading}", width * 1.1, 0)
    head = 0.5 + 0.16 * (text.count("\n") + 2)
    fig = plt.figure(figsize=(width, panels + head), dpi=100)
    grid = fig.add_gridspec(
        4,
        columns,
        height_ratios=[1, 1, 1, 0.35],
        hspace=0.55,
        wspace=0.12,
        left=0.14,
        right=0.97,
        top=panels / (panels + head),
        bottom=0.06,
    )
    titles = ("target $x_0$", f"$x_t$, t = {step.step}", X0HAT)
    for j, (image, title) in enumerate(
        zip((target.x0, target.x_t[g], target.x0hat[g]), titles, strict=True)
    ):
        ax = fig.add_subplot(grid[0, j])
        draw_tile(ax, image)
        ax.set_title(title, fontsize=10)
    for j in range(3, columns):
        blank(fig.add_subplot(grid[0, j]))
    for r, (color, indices, sign) in enumerate(
        ((POSITIVE, step.positive, "positive"), (NEGATIVE, step.negative, "negative")), start=1
    ):
        for j in range(columns):
            ax = fig.add_subplot(grid[r, j])
            if j < len(indices):
                _influencer(ax, train, int(indices[j]), color)
            else:
                blank(ax)
            if j == 0:
                ax.set_ylabel(f"top {k}\n{sign}", fontsize=10, color=color)
    _sampling_bar(fig.add_subplot(grid[3, :]), target.grid, step.step)
    fig.suptitle(
        f"{text}\nstep {g + 1} of {len(target.grid)}: t = {step.step}",
        fontsize=9,
        x=0.02,
        ha="left",
    )
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return frame


def _sampling_bar(ax: plt.Axes, grid: Sequence[int], current: int) -> None:
    """The grid steps on the sampling path (high t left), the current one highlighted."""
    ax.plot(list(grid), [0] * len(grid), "-o", color="#9a9a9a", ms=4, lw=1)
    ax.plot([current], [0], "o", color="#222222", ms=9)
    ax.set_xlim(max(grid) + 0.05 * max(max(grid), 1), min(grid) - 0.05 * max(max(grid), 1))
    ax.set_yticks([])
    ax.set_xticks(list(grid))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("denoising step t (sampling runs left to right)", fontsize=8)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)


def save_animation(path: str | os.PathLike, frames: Sequence[np.ndarray], frame_ms: int) -> None:
    """Write frames as a looping GIF (the last frame held three times as long), atomically."""
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    images = [Image.fromarray(frame) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [3 * frame_ms]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
        )
