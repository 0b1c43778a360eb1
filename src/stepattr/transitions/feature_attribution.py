"""Feature attribution: do the top influencers at a target's transition carry its feature?

The blog's check (journey-TRAK): for each target, take the top-k positive and the top-k
negative influencers (training examples with the highest and the lowest scores) at three grid
steps around its steepest-rise interval (t_start > t_end, see :mod:`stepattr.transitions.curves`):

- ``before``: the grid step just above t_start (the latent before the interval);
- ``inside``: t_start, the only grid step whose denoising step lies inside the interval
  (the steps t_end < t <= t_start turn x_{t_start} into x_{t_end});
- ``after``: t_end, the first grid step once the feature is decided.

and report the fraction of them whose training label equals the target's feature, next to
the chance level (the share of the training set with that label). A target whose interval
starts at the top of the grid has no ``before`` step and is left out of that row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

PHASES = ("before", "inside", "after")


def phase_steps(grid: Sequence[int], t_start: int, t_end: int) -> dict[str, int | None]:
    """Grid steps before / inside / after the interval (None where the grid has no such step)."""
    steps = sorted((int(s) for s in grid), reverse=True)
    if t_start not in steps or t_end not in steps:
        raise ValueError(f"interval ({t_start}, {t_end}) is not on the score grid {steps}")
    i = steps.index(t_start)
    if i + 1 >= len(steps) or steps[i + 1] != t_end:
        raise ValueError(f"({t_start}, {t_end}) are not adjacent steps of the grid {steps}")
    return {"before": steps[i - 1] if i > 0 else None, "inside": t_start, "after": t_end}


def top_influencers(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k highest (positive) and k lowest (negative) scores, strongest first."""
    scores = np.asarray(scores)
    if not 1 <= k <= len(scores):
        raise ValueError(f"transitions.top_k = {k} must lie in [1, {len(scores)}] (training set)")
    positive = np.argsort(-scores, kind="stable")[:k]
    negative = np.argsort(scores, kind="stable")[:k]
    return positive, negative


def influencer_fractions(
    scores: np.ndarray,
    index: pd.DataFrame,
    grid: Sequence[int],
    intervals: pd.DataFrame,
    train_labels: np.ndarray,
    k: int,
) -> pd.DataFrame:
    """One row per (target, phase): the step, the influencers and the feature fractions.

    ``scores`` (rows, G, n_train) with rows and grid order as in ``index`` / ``grid``;
    ``intervals`` has target_set, target_id, feature, t_start, t_end per target.
    """
    train_labels = np.asarray(train_labels)
    if scores.shape[2] != len(train_labels):
        raise ValueError(
            f"scores cover {scores.shape[2]} training examples, the train split has "
            f"{len(train_labels)}"
        )
    column = {int(s): g for g, s in enumerate(grid)}
    row_of = {
        (str(ts), int(tid)): int(r)
        for r, ts, tid in zip(index["row"], index["target_set"], index["target_id"], strict=True)
    }
    records = []
    for item in intervals.itertuples(index=False):
        key = (str(item.target_set), int(item.target_id))
        if key not in row_of:
            raise ValueError(f"target {key} of the transition intervals has no row in the scores")
        feature = int(item.feature)
        chance = float(np.mean(train_labels == feature))
        for phase, step in phase_steps(grid, int(item.t_start), int(item.t_end)).items():
            if step is None:
                continue
            positive, negative = top_influencers(scores[row_of[key], column[step]], k)
            records.append(
                {
                    "target_set": key[0],
                    "target_id": key[1],
                    "feature": feature,
                    "phase": phase,
                    "step": step,
                    "frac_positive": float(np.mean(train_labels[positive] == feature)),
                    "frac_negative": float(np.mean(train_labels[negative] == feature)),
                    "chance": chance,
                    "top_positive": " ".join(map(str, positive)),
                    "top_negative": " ".join(map(str, negative)),
                }
            )
    return pd.DataFrame(records)


def summarize(per_target: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Mean fractions per target set (and over all targets) and phase, with the median step."""
    groups = [("all", per_target, intervals)]
    for name in dict.fromkeys(intervals["target_set"]):
        groups.append(
            (
                name,
                per_target[per_target["target_set"] == name],
                intervals[intervals["target_set"] == name],
            )
        )
    rows = []
    for name, part, ivals in groups:
        for phase in PHASES:
            sel = part[part["phase"] == phase]
            rows.append(
                {
                    "target_set": name,
                    "phase": phase,
                    "n_targets": len(sel),
                    "frac_positive": sel["frac_positive"].mean() if len(sel) else np.nan,
                    "frac_negative": sel["frac_negative"].mean() if len(sel) else np.nan,
                    "chance": sel["chance"].mean() if len(sel) else np.nan,
                    "median_transition_step": float(ivals["transition_step"].median()),
                }
            )
    return pd.DataFrame(rows)


def markdown_report(summary: pd.DataFrame, header: Mapping[str, Any], k: int) -> str:
    """The summary as a Markdown table, preceded by what it was computed from."""
    lines = ["# Feature attribution: top influencers that carry the target's feature", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        f"- fractions: share of the top-{k} positive / negative influencers whose training "
        "label equals the target's feature, averaged over targets; chance = share of the "
        "training set with that label",
        "- phases: before = grid step above the steepest-rise interval, inside = its start "
        "t_start, after = its end t_end",
        "",
        "| targets | phase | n | top positive | top negative | chance | median transition step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.target_set} | {r.phase} | {r.n_targets} | {_fmt(r.frac_positive)} | "
            f"{_fmt(r.frac_negative)} | {_fmt(r.chance)} | {r.median_transition_step:g} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def load_intervals(paths: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """The steepest-rise intervals of every target set, with a ``target_set`` column."""
    parts = []
    for name, path in paths.items():
        frame = pd.read_csv(path)
        missing = {"target_id", "feature", "t_start", "t_end", "transition_step"} - set(
            frame.columns
        )
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        parts.append(frame.assign(target_set=name))
    return pd.concat(parts, ignore_index=True)
