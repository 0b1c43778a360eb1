"""Linear datamodeling score (LDS): do attribution scores predict retraining on subsets?

For a target x and subsets S_1..S_M of the training set, an attribution tau(x, i) predicts
the effect of training on S_j as ``predicted_j = sum_{i in S_j} tau(x, i)`` (``masks @ scores``).
The LDS of one target is the Spearman correlation, across subsets, between the prediction and
the output of the models actually trained on S_j; LDS_t is its mean over targets, with a
two-way percentile bootstrap CI that resamples subsets and targets. Every target is scored on
the same M subsets, so the per-target correlations share the subsets' sampling error; a CI
over targets alone would ignore it (with M = 12 the common part of the correlations alone has
a standard deviation near 0.3) and claim far more precision than the data hold.

Sign: every score in this workflow is positive when including z_i *lowers* the target's loss
(pushes the model toward the target; similarity baselines: similar = positive). The ground
truth is a loss, so the prediction is correlated with the *negated* loss, and a method that
predicts retraining well gets a positive LDS.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from stepattr.core.settings import settings_from

RESAMPLED_AXES = ("targets", "subsets")  # what a two-way bootstrap replicate draws anew


@dataclass(frozen=True)
class LdsSettings:
    """The ``lds`` section (config/schema.yaml), typed once where a job starts.
    ``target_resamples`` None: attribution.target_resamples."""

    target_resamples: int | None
    dtrak_draws: int
    bootstrap: int
    ci_level: float
    seed: int
    batch_size: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> LdsSettings:
        return settings_from(cls, section, "lds")


@dataclass(frozen=True)
class LDS:
    """Mean per-target Spearman correlation with its bootstrap CI."""

    lds: float
    ci_low: float
    ci_high: float
    n_targets: int
    n_excluded: int


def predicted_outputs(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(..., n)`` scores and ``(M, n)`` boolean masks -> ``(..., M)`` summed subset scores."""
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise ValueError(f"subset masks must be boolean, got {masks.dtype}")
    if masks.ndim != 2 or scores.shape[-1] != masks.shape[1]:
        raise ValueError(
            f"scores {scores.shape} and masks {masks.shape} disagree on the number of "
            "training examples"
        )
    return np.asarray(scores, dtype=np.float64) @ masks.T.astype(np.float64)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (average ranks for ties).

    Where either vector is constant (or holds a NaN) the correlation is undefined: NaN.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate arrays of shapes {a.shape} and {b.shape}")
    if a.shape[-1] < 2:
        raise ValueError(f"need at least 2 subsets to correlate, got {a.shape[-1]}")
    ra = rankdata(a, axis=-1, nan_policy="propagate")
    rb = rankdata(b, axis=-1, nan_policy="propagate")
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=-1) / denom
    return np.where(denom > 0, rho, np.nan)


def lds_per_target(scores: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Spearman(predicted, -loss) per target (and step).

    ``scores`` (..., n), ``masks`` (M, n), ``losses`` (..., M): the ground-truth loss of each
    target under the model(s) trained on each subset. Returns ``(...)``, NaN where undefined.
    """
    predicted = predicted_outputs(masks, scores)
    if predicted.shape != np.shape(losses):
        raise ValueError(
            f"predictions {predicted.shape} and ground-truth losses {np.shape(losses)} differ"
        )
    return spearman_rows(predicted, -np.asarray(losses, dtype=np.float64))


def two_way_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    m: int,
    subsets: int,
    n_boot: int,
    seed: int,
    level: float,
    resample: Sequence[str] = RESAMPLED_AXES,
) -> tuple[float, float]:
    """Percentile CI of ``statistic(rows, cols)`` (rows (m, 1), cols (1, M) index arrays)
    over replicates that resample the targets and the subsets (the same subset columns for
    every target, as the targets share them). ``resample`` names the axes drawn anew (a
    subset of :data:`RESAMPLED_AXES`); an axis left out is held at its full index, so a CI
    over one axis alone says how much of the width that axis carries."""
    unknown = set(resample) - set(RESAMPLED_AXES)
    if unknown or not resample:
        raise ValueError(f"resample = {list(resample)}: name one or both of {RESAMPLED_AXES}")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    all_rows, all_cols = np.arange(m)[:, None], np.arange(subsets)[None, :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for b in range(n_boot):
            rows = rng.integers(0, m, m)[:, None] if "targets" in resample else all_rows
            cols = rng.integers(0, subsets, subsets)[None, :] if "subsets" in resample else all_cols
            values[b] = statistic(rows, cols)
    tail = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _kept_targets(rho: np.ndarray) -> tuple[np.ndarray, int]:
    """Targets whose correlation is defined, and how many were excluded (with a warning)."""
    keep = np.isfinite(rho)
    excluded = int(rho.size - keep.sum())
    if excluded:
        warnings.warn(
            f"{excluded} of {rho.size} targets have an undefined Spearman correlation "
            "(constant prediction or ground truth); they are excluded from the LDS",
            RuntimeWarning,
            stacklevel=3,
        )
    return keep, excluded


def bootstrap_lds(
    predicted: np.ndarray, actual: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> LDS:
    """Mean over targets of Spearman(predicted, actual) across subsets, with a two-way
    percentile bootstrap CI: each replicate resamples the subsets (the same columns for every
    target, as the data share them) and the targets, and recomputes the correlations.

    ``predicted``, ``actual``: (targets, M). Targets with an undefined correlation (constant
    prediction or ground truth) are excluded, counted, and reported in a warning.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    keep, excluded = _kept_targets(spearman_rows(predicted, actual))
    if not keep.any():
        return LDS(float("nan"), float("nan"), float("nan"), 0, excluded)
    predicted, actual = predicted[keep], actual[keep]

    def mean_rho(rows, cols) -> float:
        return float(np.nanmean(spearman_rows(predicted[rows, cols], actual[rows, cols])))

    whole = mean_rho(np.arange(len(actual))[:, None], np.arange(actual.shape[1])[None, :])
    lo, hi = two_way_bootstrap(mean_rho, *actual.shape, n_boot, seed, level)
    return LDS(whole, lo, hi, int(keep.sum()), excluded)


def seed_agreement(outputs: np.ndarray) -> np.ndarray:
    """The retraining ceiling per target ("exact retraining", Mlodozeniec et al.): Spearman
    correlation across subsets of one training seed's outputs with the mean of the other
    seeds' outputs on the same subsets, averaged over which seed is left out.

    ``outputs`` (..., M, s): each subset's output under each of its s >= 2 seeds. No method
    that predicts from the subset alone can be expected to beat it (seed noise is not a
    function of the subset); returns (...), NaN where undefined.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    s = outputs.shape[-1]
    if s < 2:
        raise ValueError(f"the retraining ceiling needs >= 2 seeds per subset, got {s}")
    total = outputs.sum(axis=-1)
    rho = [spearman_rows(outputs[..., k], (total - outputs[..., k]) / (s - 1)) for k in range(s)]
    return np.mean(rho, axis=0)


def bootstrap_ceiling(outputs: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> LDS:
    """Mean over targets of :func:`seed_agreement`, with the LDS's two-way bootstrap CI.

    ``outputs``: (targets, M, s). The sign is immaterial (both sides are the same quantity).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    keep, excluded = _kept_targets(seed_agreement(outputs))
    if not keep.any():
        return LDS(float("nan"), float("nan"), float("nan"), 0, excluded)
    outputs = outputs[keep]

    def mean_rho(rows, cols) -> float:
        return float(np.nanmean(seed_agreement(outputs[rows, cols])))

    m, subsets = outputs.shape[:2]
    whole = mean_rho(np.arange(m)[:, None], np.arange(subsets)[None, :])
    lo, hi = two_way_bootstrap(mean_rho, m, subsets, n_boot, seed, level)
    return LDS(whole, lo, hi, int(keep.sum()), excluded)


@dataclass(frozen=True)
class LDSDifference:
    """Mean over targets of LDS(a) - LDS(b), with its paired bootstrap CI."""

    difference: float
    ci_low: float
    ci_high: float
    n_targets: int


def bootstrap_lds_difference(
    predicted_a: np.ndarray,
    predicted_b: np.ndarray,
    actual: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
    resample: Sequence[str] = RESAMPLED_AXES,
) -> LDSDifference:
    """LDS of method a minus method b on the same subsets and targets, with a paired two-way
    percentile bootstrap CI: each replicate resamples the subsets and the targets once and
    recomputes both methods' correlations on that same resample, so the noise the two
    share (which subsets and targets happened to be drawn) cancels in the difference.

    ``predicted_a``, ``predicted_b``, ``actual``: (targets, M). Targets where either
    correlation is undefined are left out of both. ``resample``: as in
    :func:`two_way_bootstrap`.
    """
    predicted_a, predicted_b, actual = (
        np.asarray(x, dtype=np.float64) for x in (predicted_a, predicted_b, actual)
    )
    keep = np.isfinite(spearman_rows(predicted_a, actual) - spearman_rows(predicted_b, actual))
    if not keep.any():
        return LDSDifference(float("nan"), float("nan"), float("nan"), 0)
    predicted_a, predicted_b, actual = predicted_a[keep], predicted_b[keep], actual[keep]
    m, subsets = actual.shape

    def difference(rows, cols) -> float:
        a = spearman_rows(predicted_a[rows, cols], actual[rows, cols])
        b = spearman_rows(predicted_b[rows, cols], actual[rows, cols])
        return float(np.nanmean(a - b))

    lo, hi = two_way_bootstrap(difference, m, subsets, n_boot, seed, level, resample)
    whole = difference(np.arange(m)[:, None], np.arange(subsets)[None, :])
    return LDSDifference(whole, lo, hi, m)


def mean_lds_over_steps(scores: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> float:
    """The selection criterion for lambda: LDS_t (mean over targets) averaged over steps.

    ``scores`` (m, G, n), ``losses`` (m, G, M). Undefined correlations are skipped.
    """
    rho = lds_per_target(scores, masks, losses)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_step = np.nanmean(rho, axis=0)
    return float(np.nanmean(per_step)) if np.isfinite(per_step).any() else float("nan")


def select_lambda(
    lambdas: Sequence[float],
    scores_for: Callable[[float], np.ndarray],
    masks: np.ndarray,
    losses: np.ndarray,
) -> tuple[float, dict[float, float]]:
    """Pick the lambda whose scores give the best mean LDS over steps on held-out subsets.

    ``scores_for(lam)`` returns (m, G, n) scores; ``masks``/``losses`` are those of the
    held-out subsets only. Ties (and all-NaN criteria) go to the smaller lambda.
    """
    if not lambdas:
        raise ValueError("no lambdas to choose from")
    per_lambda = {
        float(lam): mean_lds_over_steps(scores_for(float(lam)), masks, losses) for lam in lambdas
    }
    best, best_value = None, -np.inf
    for lam in sorted(per_lambda):
        value = per_lambda[lam]
        if np.isfinite(value) and value > best_value + 1e-12:
            best, best_value = lam, value
    return (min(per_lambda) if best is None else best), per_lambda
