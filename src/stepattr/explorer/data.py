"""What the explorer page shows, as one JSON-able dict (the page's script renders it).

Everything is computed here, in Python, from the workflow's files; the page only looks
things up. Per method, target and grid step: the top-k positive and negative influencers
(:func:`stepattr.figures.influencers.step_influencers`, the figures' own ranking: the k
highest and the k lowest scores, strongest first) with their scores. Images travel as PNG data
URIs at their stored resolution (the page enlarges them nearest-neighbour); of the training
split, only the images that are some top-k influencer are embedded.

The dict's keys (``DATA_KEYS``):

- ``title``, ``heading``: what ran (config files), for the page's header;
- ``grid``: the grid steps in sampling order (high t first); ``top_k``; ``n_train``; ``side``
  (the images' side in pixels, which the page scales by whole multiples); ``captioned``;
- ``methods``: ``[{name, label, setting, models}]`` in selector order (``setting``: the
  chosen lambda or damping, None for the baselines);
- ``targets``: per target (score-row order) ``{id, set, name, label, prompt, x0, x_t, x0hat,
  feature, detector, curve, interval}``: ``x_t``/``x0hat`` one URI per grid step; ``curve``
  ``{p, ci_low, ci_high}`` per grid step and ``interval`` ``{t_start, t_end, rise}`` where
  the run has feature transitions, else None;
- ``train``: training row (a string) -> ``{img, label, caption}``;
- ``top``: method -> per target -> per grid step ``[pos_rows, pos_scores, neg_rows,
  neg_scores]``;
- ``lds``: method (``ceiling`` included where the run has one) -> target set -> step (a
  string) -> ``[lds, ci_low, ci_high, n_targets]``;
- ``patches``: None, or ``{method, steps, targets: {id: [{name, box, top}]}}`` with ``top``
  per patch step ``[pos_rows, pos_scores]``.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from stepattr.figures.influencers import TrainingImages, Trajectory, step_influencers
from stepattr.lds.tables import CEILING
from stepattr.transitions.feature_attribution import top_influencers

DATA_KEYS = (
    "title",
    "heading",
    "grid",
    "top_k",
    "n_train",
    "side",
    "captioned",
    "methods",
    "targets",
    "train",
    "top",
    "lds",
    "patches",
)


@dataclass(frozen=True)
class MethodScores:
    """One scored method: its scores (rows = targets in page order, G, n_train) and meta."""

    name: str
    label: str
    scores: np.ndarray
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class PatchScores:
    """Patch scores (stage figures): rows = (target, patch) pairs of ``index``, one column per
    patch step, scored with ``method``."""

    method: str
    scores: np.ndarray  # (rows, len(steps), n_train)
    index: pd.DataFrame  # row, target_id, patch, x0, y0, x1, y1
    steps: Sequence[int]


def to_display_uint8(image: np.ndarray) -> np.ndarray:
    """One image (C, H, W) -> (H, W) or (H, W, 3) uint8: stored uint8 as is, model-space
    floats ([-1, 1]) clipped, as the figures draw them."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image (C, H, W) with C in {{1, 3}}, got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round((image.astype(np.float32) + 1.0) * 127.5), 0, 255)
        image = image.astype(np.uint8)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def png_uri(image: np.ndarray) -> str:
    """A PNG data URI of one image at its stored resolution (the page scales it up)."""
    buffer = io.BytesIO()
    Image.fromarray(to_display_uint8(image)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def short(value: float) -> float | None:
    """A score or statistic for the page: four significant digits; None for NaN."""
    value = float(value)
    return None if not math.isfinite(value) else float(f"{value:.4g}")


def method_setting(meta: Mapping[str, Any]) -> str | None:
    """What was tuned for a method's scores: TRAK's lambda, an influence method's damping;
    None where nothing was (the baselines record lambda null)."""
    for key in ("lambda", "damping"):
        if meta.get(key) is not None:
            return f"{key} {float(meta[key]):g}"
    return None


def step_tops(scores: np.ndarray, grid: Sequence[int], k: int) -> list[list[list]]:
    """Per grid step ``[pos_rows, pos_scores, neg_rows, neg_scores]`` of one target's scores
    (G, n): the figures' ranking (highest first, lowest first)."""
    scores = np.asarray(scores, dtype=np.float64)
    return [
        [
            step.positive.tolist(),
            [short(v) for v in row[step.positive]],
            step.negative.tolist(),
            [short(v) for v in row[step.negative]],
        ]
        for step, row in zip(step_influencers(scores, grid, k), scores, strict=True)
    ]


def class_name(class_names: Sequence[str], index: int) -> str | None:
    """The class name of a label index; None for unknown (-1)."""
    index = int(index)
    if index < 0:
        return None
    return str(class_names[index]) if index < len(class_names) else str(index)


def _target_curve(
    curves: pd.DataFrame | None, target_id: int, grid: Sequence[int]
) -> dict[str, list] | None:
    if curves is None:
        return None
    mine = curves[curves["target_id"] == target_id].set_index("step")
    if mine.empty:
        return None
    missing = [s for s in grid if s not in mine.index]
    if missing:
        raise ValueError(f"target {target_id}: the feature curve has no steps {missing}")
    return {key: [short(mine.loc[s, key]) for s in grid] for key in ("p", "ci_low", "ci_high")}


def _target_interval(intervals: pd.DataFrame | None, target_id: int) -> dict[str, Any] | None:
    if intervals is None:
        return None
    mine = intervals[intervals["target_id"] == target_id]
    if mine.empty:
        return None
    row = mine.iloc[0]
    return {
        "t_start": int(row["t_start"]),
        "t_end": int(row["t_end"]),
        "rise": short(row["rise"]),
        "feature": int(row["feature"]),
        "detector": str(row["detector"]),
    }


def lds_lookup(lds: pd.DataFrame | None) -> dict[str, dict[str, dict[str, list]]]:
    """``lds.csv`` as method -> target set -> step -> ``[lds, ci_low, ci_high, n_targets]``
    (the retraining ceiling under its method name, ``ceiling``)."""
    if lds is None:
        return {}
    missing = {"method", "target_set", "step", "lds", "ci_low", "ci_high"} - set(lds.columns)
    if missing:
        raise ValueError(f"lds.csv: missing columns {sorted(missing)}")
    found: dict[str, dict[str, dict[str, list]]] = {}
    for rec in lds.itertuples(index=False):
        n = getattr(rec, "n_targets", None)
        method = "ceiling" if rec.method == CEILING else str(rec.method)  # the page's name
        found.setdefault(method, {}).setdefault(str(rec.target_set), {})[str(int(rec.step))] = [
            short(rec.lds),
            short(rec.ci_low),
            short(rec.ci_high),
            None if n is None or pd.isna(n) else int(n),
        ]
    return found


def _patch_data(patches: PatchScores | None, k: int) -> tuple[dict[str, Any] | None, set[int]]:
    if patches is None:
        return None, set()
    rows: set[int] = set()
    by_target: dict[str, list[dict[str, Any]]] = {}
    for rec in patches.index.itertuples(index=False):
        values = np.asarray(patches.scores[int(rec.row)], dtype=np.float64)
        tops = []
        for column in values:
            positive = top_influencers(column, k)[0]
            rows.update(positive.tolist())
            tops.append([positive.tolist(), [short(v) for v in column[positive]]])
        by_target.setdefault(str(int(rec.target_id)), []).append(
            {
                "name": str(rec.patch),
                "box": [int(rec.x0), int(rec.y0), int(rec.x1), int(rec.y1)],
                "top": tops,
            }
        )
    data = {
        "method": patches.method,
        "steps": [int(s) for s in patches.steps],
        "targets": by_target,
    }
    return data, rows


def _train_entry(train: TrainingImages, row: int) -> dict[str, Any]:
    caption = None
    if train.captions is not None:
        caption = " | ".join(train.captions[row]) or None
    return {
        "img": png_uri(train.images[row]),
        "label": class_name(train.class_names, int(train.labels[row])),
        "caption": caption,
    }


def page_data(
    *,
    target_ids: Sequence[int],
    target_sets: Sequence[str],
    target_labels: Sequence[int],
    prompts: Sequence[str] | None,
    trajectories: Mapping[int, Trajectory],
    grid: Sequence[int],
    train: TrainingImages,
    methods: Sequence[MethodScores],
    top_k: int,
    curves: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
    lds: pd.DataFrame | None = None,
    patches: PatchScores | None = None,
    title: str = "Attribution explorer",
    heading: str = "",
) -> dict[str, Any]:
    """The page's data (see the module docstring). ``target_*`` are in score-row order (every
    method's rows); ``curves``/``intervals`` are the transitions stage's tables of all sets."""
    if not methods:
        raise ValueError("the explorer needs at least one scored method")
    grid = [int(s) for s in grid]
    n_train = len(train.labels)
    if not 1 <= top_k <= n_train:
        raise ValueError(f"explorer.top_k = {top_k} must lie in [1, {n_train}] (training set)")
    m = len(target_ids)
    for method in methods:
        if method.scores.shape != (m, len(grid), n_train):
            raise ValueError(
                f"{method.name}: scores {method.scores.shape}, expected ({m}, {len(grid)}, "
                f"{n_train}) for the targets, grid and training split"
            )
    top = {
        method.name: [step_tops(method.scores[i], grid, top_k) for i in range(m)]
        for method in methods
    }
    rows: set[int] = set()
    for per_target in top.values():
        for per_step in per_target:
            for pos, _, neg, _ in per_step:
                rows.update(pos)
                rows.update(neg)
    patch_data, patch_rows = _patch_data(patches, top_k)
    rows |= patch_rows
    targets = []
    for i, tid in enumerate(int(t) for t in target_ids):
        trajectory = trajectories[tid]
        if list(trajectory.grid) != grid:
            raise ValueError(f"target {tid}: grid {list(trajectory.grid)} differs from {grid}")
        interval = _target_interval(intervals, tid)
        targets.append(
            {
                "id": tid,
                "set": str(target_sets[i]),
                "name": trajectory.name,
                "label": class_name(train.class_names, int(target_labels[i])),
                "prompt": None if prompts is None else str(prompts[i]),
                "x0": png_uri(trajectory.x0),
                "x_t": [png_uri(x) for x in trajectory.x_t],
                "x0hat": [png_uri(x) for x in trajectory.x0hat],
                "feature": None
                if interval is None
                else class_name(train.class_names, interval["feature"]),
                "detector": None if interval is None else interval["detector"],
                "curve": _target_curve(curves, tid, grid),
                "interval": None
                if interval is None
                else {key: interval[key] for key in ("t_start", "t_end", "rise")},
            }
        )
    return {
        "title": title,
        "heading": heading,
        "grid": grid,
        "top_k": int(top_k),
        "n_train": n_train,
        "side": int(train.images.shape[-1]),
        "captioned": train.captions is not None,
        "methods": [
            {
                "name": method.name,
                "label": method.label,
                "setting": method_setting(method.meta),
                "models": len(method.meta.get("models", [])),
            }
            for method in methods
        ],
        "targets": targets,
        "train": {str(r): _train_entry(train, r) for r in sorted(rows)},
        "top": top,
        "lds": lds_lookup(lds),
        "patches": patch_data,
    }
