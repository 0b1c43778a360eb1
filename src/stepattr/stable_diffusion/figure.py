"""The pretrained pipeline's transition figure, in the style of the unconditional family's.

One row per shown trajectory: its decoded x_t at the grid steps and its final image, then one
panel per feature with P(feature | x_t), the Wilson band and the steepest-rise interval.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from stepattr.transitions.figure import draw_curve, show_image  # noqa: E402


def pipeline_transitions_figure(
    curves: pd.DataFrame,
    intervals: pd.DataFrame,
    final: np.ndarray,
    x_t: np.ndarray,
    per_prompt: int,
) -> Figure:
    """The first ``per_prompt`` trajectories of each prompt. ``final`` (P*T, C, H, W) and
    ``x_t`` (P*T, G, C, H, W) are in prompt-major order, as ``pipeline_transitions`` returns."""
    count = int(curves["trajectory"].max()) + 1
    shown = [
        (p, j) for p in sorted(curves["prompt_id"].unique()) for j in range(min(per_prompt, count))
    ]
    features = list(dict.fromkeys(curves["feature"]))
    grid = sorted(curves["step"].unique(), reverse=True)
    strip = len(grid) + 1
    fig = plt.figure(figsize=(0.9 * strip + 4.2 * len(features), 2.8 * len(shown)))
    blocks = np.atleast_1d(fig.subfigures(len(shown), 1, hspace=0.05))
    for block, (p, j) in zip(blocks, shown, strict=True):
        row = int(p) * count + j
        outer = block.add_gridspec(1, 2, width_ratios=[0.9 * strip, 4.2 * len(features)],
                                   wspace=0.12)  # fmt: skip
        images = outer[0, 0].subgridspec(1, strip, wspace=0.05)
        for c in range(strip):
            ax = block.add_subplot(images[0, c])
            show_image(ax, x_t[row, c] if c < len(grid) else final[row])
            ax.set_title(f"t={grid[c]}" if c < len(grid) else "x_0", fontsize=8)
        mine = curves[(curves["prompt_id"] == p) & (curves["trajectory"] == j)]
        panels = outer[0, 1].subgridspec(1, len(features), wspace=0.3)
        for f, name in enumerate(features):
            curve = mine[mine["feature"] == name]
            interval = intervals[
                (intervals["prompt_id"] == p) & (intervals["trajectory"] == j)
                & (intervals["feature"] == name)
            ].iloc[0]  # fmt: skip
            ax = block.add_subplot(panels[0, f])
            draw_curve(ax, curve, interval, {})
            ax.set_title(f"{name} = {interval['value']!r} (+{interval['rise']:.2f})", fontsize=9)
        prompt = mine["prompt"].iloc[0]
        block.suptitle(f"prompt {prompt!r}, trajectory {j}", x=0.01, ha="left", fontsize=10)
    return fig
