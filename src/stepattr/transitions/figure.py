"""The feature-transition figure, after the blog's horse figure.

One block per target: on the left P(feature | x_t) against the step (sampling direction, high
t to low t, left to right) with its Wilson 95% band and the steepest-rise interval shaded; on
the right, at the steps before / inside / after the interval, the target's one-step estimate
x0hat_t and its top positive and top negative influencers, each titled with its training
label (green where it is the target's feature).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402

from stepattr.transitions.feature_attribution import PHASES  # noqa: E402

MATCH, OTHER = "#1a7f37", "#6e7781"


def choose_targets(intervals: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` targets with the steepest rise (ties: target set, then id)."""
    ranked = intervals.sort_values(
        ["rise", "target_set", "target_id"], ascending=[False, True, True], kind="stable"
    )
    return ranked.head(count)


def show_image(ax: plt.Axes, image: np.ndarray) -> None:
    """Draw one image stored in [-1, 1], (C, H, W) with C in {1, 3}."""
    shown = np.clip((np.asarray(image, dtype=np.float32) + 1) / 2, 0, 1)
    if shown.shape[0] == 1:
        ax.imshow(shown[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(shown.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_curve(ax: plt.Axes, curve: pd.DataFrame, interval: pd.Series, steps: Mapping) -> None:
    """P(feature | x_t) (columns step, p, ci_low, ci_high, n) with its Wilson band, the
    steepest-rise ``interval`` (t_start, t_end) shaded and a dotted line per ``steps`` entry."""
    curve = curve.sort_values("step", ascending=False)
    ax.axvspan(
        interval["t_end"],
        interval["t_start"],
        color="#f6c344",
        alpha=0.35,
        lw=0,
        label="steepest rise",
    )
    ax.fill_between(
        curve["step"],
        curve["ci_low"],
        curve["ci_high"],
        color="#4c72b0",
        alpha=0.25,
        lw=0,
        label="Wilson 95% CI",
    )
    ax.plot(curve["step"], curve["p"], "o-", color="#4c72b0", ms=4, label="P(feature | x_t)")
    for phase, step in steps.items():
        ax.axvline(step, color="#444444", ls=":", lw=1)
        ax.text(
            step,
            0.97,
            f" {phase}",
            rotation=90,
            ha="left",
            va="top",
            fontsize=8,
            transform=ax.get_xaxis_transform(),
        )
    ax.set_xlim(curve["step"].max() + 20, curve["step"].min() - 20)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("denoising step t (sampling runs left to right)")
    ax.set_ylabel(f"P(feature | x_t), n = {int(curve['n'].iloc[0])}")
    ax.legend(loc="center left", fontsize=8, frameon=False)


def _target_block(
    fig: SubFigure,
    interval: pd.Series,
    curve: pd.DataFrame,
    influencers: pd.DataFrame,
    x0hat: np.ndarray,
    grid: Sequence[int],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    class_names: Sequence[str],
    shown: int,
) -> None:
    feature = int(interval["feature"])
    rows = influencers.set_index("phase")
    phases = [p for p in PHASES if p in rows.index]
    steps = {p: int(rows.loc[p, "step"]) for p in phases}
    columns = 1 + 2 * shown
    outer = fig.add_gridspec(1, 2, width_ratios=[1.25, 0.42 * columns], wspace=0.12)
    draw_curve(fig.add_subplot(outer[0]), curve, interval, steps)
    inner = outer[1].subgridspec(
        len(phases),
        columns + 2,
        hspace=0.45,
        wspace=0.08,
        width_ratios=[1, 0.25] + [1] * shown + [0.25] + [1] * shown,
    )
    column_of = {int(s): g for g, s in enumerate(grid)}
    for r, phase in enumerate(phases):
        step = steps[phase]
        ax = fig.add_subplot(inner[r, 0])
        show_image(ax, x0hat[column_of[step]])
        ax.set_ylabel(f"{phase}\nt = {step}", fontsize=10)
        ax.set_title("x0hat_t", fontsize=9)
        for sign, offset in (("positive", 2), ("negative", 3 + shown)):
            ids = [int(i) for i in str(rows.loc[phase, f"top_{sign}"]).split()][:shown]
            for j, idx in enumerate(ids):
                ax = fig.add_subplot(inner[r, offset + j])
                show_image(ax, train_images[idx])
                label = int(train_labels[idx])
                if r == 0 and j == len(ids) // 2:
                    ax.text(
                        0.5,
                        1.4,
                        f"top {sign} influencers",
                        transform=ax.transAxes,
                        ha="center",
                        va="bottom",
                        fontsize=10,
                    )
                ax.set_title(
                    class_names[label],
                    fontsize=9,
                    color=MATCH if label == feature else OTHER,
                    fontweight="bold" if label == feature else "normal",
                )
    fig.suptitle(
        f"{interval['target_set']} target {int(interval['target_id'])}: feature "
        f"'{class_names[feature]}' ({interval['detector']}); steepest rise "
        f"t = {int(interval['t_start'])} -> {int(interval['t_end'])} "
        f"(+{interval['rise']:.2f})",
        fontsize=11,
        x=0.01,
        ha="left",
    )


def transitions_figure(
    chosen: pd.DataFrame,
    curves: pd.DataFrame,
    influencers: pd.DataFrame,
    x0hat: Mapping[tuple[str, int], np.ndarray],
    grid: Sequence[int],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    class_names: Sequence[str],
    shown: int = 5,
) -> Figure:
    """One block per row of ``chosen`` (see the module docstring).

    ``curves`` and ``influencers`` carry a ``target_set`` column; ``x0hat`` maps
    (target_set, target_id) to that target's (G, C, H, W) estimates, grid order as ``grid``.
    """
    if chosen.empty:
        fig = plt.figure(figsize=(8, 2))
        fig.text(0.5, 0.5, "no targets to show (transitions.figure_targets = 0)", ha="center")
        return fig
    fig = plt.figure(figsize=(6.0 + 0.85 * (1 + 2 * shown), 3.4 * len(chosen)))
    blocks = np.atleast_1d(fig.subfigures(len(chosen), 1, hspace=0.08))
    for block, (_, interval) in zip(blocks, chosen.iterrows(), strict=True):
        key = (str(interval["target_set"]), int(interval["target_id"]))
        mine = (curves["target_set"] == key[0]) & (curves["target_id"] == key[1])
        theirs = (influencers["target_set"] == key[0]) & (influencers["target_id"] == key[1])
        _target_block(
            block,
            interval,
            curves[mine],
            influencers[theirs],
            x0hat[key],
            grid,
            train_images,
            train_labels,
            class_names,
            shown,
        )
    return fig
