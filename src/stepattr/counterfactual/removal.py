"""Counterfactual check: remove a target's top influencers, retrain, regenerate.

A *pair* is a generated target x (its index in the generated set, which is its target id)
and a grid step t. For each pair, removal rule and fraction, the rule picks k training
examples, a model is retrained without them (full_0's recipe and seed, see the rules), and
the retrained model is compared with a *reference*: full_0 itself when the retraining runs
full_0's number of steps, else a model trained on all data with the retraining's steps and
seed. With every model this module measures:

- ``f``: the loss output function f_t of x at t on the fixed ``x0hat_t``, with the same R
  noises for every model (:func:`stepattr.core.output_functions.step_losses`, the LDS ground
  truth, common random numbers);
- P(same feature | x_t) from N completions of the saved latent x_t, where the feature is the
  detector's class of the target's final x0 (:func:`stepattr.transitions.curves.target_features`):
  (a) ``interval``: the model under test denoises only the steps s with t_low < s <= t and
  the original full_0 all later steps (the paper's interval replacement, :class:`IntervalModel`);
  (b) ``rest``: the model under test denoises every step from t down to 0.
  Completion j of a pair uses the same noise with every model
  (:func:`stepattr.transitions.curves.completion_generators`).

``t_low`` is the next lower grid step (``delta`` null: one grid spacing, the steepest-rise
interval when t is its start), else ``t - delta``; -1 (through x_0) when nothing lies below.

Removal rules (k = round(fraction x n_train)):

- ``trak``: the k highest TRAK scores of (x, t) (loss output function; positive = including
  the example lowers f_t), highest first, ties to the lower train index;
- ``pixel``: the k highest pixel-similarity scores (cosine of x0hat_t and the train image);
- ``random``: k examples drawn without replacement, seeded by (seed, target id, step, k).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from stepattr.core.diffusion import eps_model, load_model
from stepattr.core.images import load_split
from stepattr.core.io import save_csv
from stepattr.core.names import REMOVAL_RULES
from stepattr.core.output_functions import step_losses
from stepattr.core.seeds import RANDOM_REMOVAL, numpy_rng
from stepattr.core.settings import settings_from
from stepattr.detectors.detector import Detector
from stepattr.training.subsets import save_masks
from stepattr.trak.storage import load_scores, score_row
from stepattr.transitions.curves import load_targets, sample_completions, target_features

PAIR_COLUMNS = ["pair", "target_id", "step", "t_low"]
REMOVAL_COLUMNS = ["rank", "train_index", "label", "score", "trak_score"]
EVAL_COLUMNS = [
    "model_id", "pair", "target_id", "step", "t_low", "feature", "f",
    "same_interval", "same_rest", "n", "detector",
]  # fmt: skip


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CounterfactualPair:
    """One configured (generated target, grid step) pair; ``step`` None: the start of the
    target's steepest-rise interval (transitions)."""

    target: int
    step: int | None


@dataclass(frozen=True)
class CounterfactualSettings:
    """The ``counterfactual`` section (config/schema.yaml), typed once where a job starts."""

    pairs: tuple[CounterfactualPair, ...]
    fractions: tuple[float, ...]
    rules: tuple[str, ...]
    delta: int | None
    completions: int
    train_steps: int | None
    seed: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> CounterfactualSettings:
        pairs = tuple(
            settings_from(CounterfactualPair, pair, f"counterfactual.pairs[{i}]")
            for i, pair in enumerate(section["pairs"])
        )
        return settings_from(cls, dict(section) | {"pairs": pairs}, "counterfactual")


# ----------------------------------------------------------------------------- pairs


def interval_low(grid: Sequence[int], step: int, delta: int | None) -> int:
    """Lower end ``t_low`` of the replacement interval ``t_low < s <= step`` (module docstring)."""
    if delta is None:
        below = [int(s) for s in grid if s < step]
        return max(below) if below else -1
    if delta < 1:
        raise ValueError(f"counterfactual.delta = {delta} must be at least 1")
    return max(int(step) - int(delta), -1)


def resolve_pairs(
    pairs: Sequence[CounterfactualPair],
    grid: Sequence[int],
    num_targets: int,
    intervals: pd.DataFrame | None,
    delta: int | None,
) -> pd.DataFrame:
    """The configured pairs with their steps and intervals: columns ``PAIR_COLUMNS``.

    A pair's ``step`` null takes ``t_start`` of the target's steepest-rise interval from
    ``intervals`` (the transitions family's ``generated_intervals.csv``).
    """
    grid = [int(s) for s in grid]
    rows = []
    for i, pair in enumerate(pairs):
        target = pair.target
        if not 0 <= target < num_targets:
            raise ValueError(
                f"counterfactual.pairs[{i}].target = {target}: the generated set has "
                f"{num_targets} targets"
            )
        step = pair.step
        if step is None:
            if intervals is None:
                raise ValueError(
                    f"counterfactual.pairs[{i}].step is null but no transition intervals were given"
                )
            match = intervals[intervals["target_id"] == target]
            if len(match) != 1:
                raise ValueError(
                    f"counterfactual.pairs[{i}]: target {target} has {len(match)} rows in the "
                    "transition intervals, expected 1"
                )
            step = int(match["t_start"].iloc[0])
        if int(step) not in grid:
            raise ValueError(f"counterfactual.pairs[{i}].step = {step} is not on the grid {grid}")
        rows.append(
            {
                "pair": i,
                "target_id": target,
                "step": int(step),
                "t_low": interval_low(grid, step, delta),
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


# ----------------------------------------------------------------------------- removals


def removal_count(fraction: float, n_train: int) -> int:
    """k = round(fraction x n_train), which must leave at least one example and remove one."""
    k = int(round(float(fraction) * n_train))
    if not 1 <= k < n_train:
        raise ValueError(
            f"counterfactual.fractions: {fraction} of {n_train} training examples is k = {k}; "
            f"k must lie in [1, {n_train - 1}]"
        )
    return k


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, highest first; equal scores keep index order."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; cannot rank training examples")
    return np.argsort(-scores, kind="stable")[:k]


def random_removal(n_train: int, k: int, seed: int, target_id: int, step: int) -> np.ndarray:
    """``k`` distinct training indices drawn from the stream (seed, target id, step, k)."""
    rng = numpy_rng(RANDOM_REMOVAL, seed, target_id, step, k)
    return rng.choice(n_train, size=k, replace=False).astype(np.int64)


def select_removed(
    rule: str,
    k: int,
    n_train: int,
    scores: np.ndarray | None,
    seed: int,
    target_id: int,
    step: int,
) -> np.ndarray:
    """Training indices a removal rule takes out (``scores``: the rule's (n_train,) scores)."""
    if rule == "random":
        return random_removal(n_train, k, seed, target_id, step)
    if rule not in REMOVAL_RULES:
        raise ValueError(f"unknown removal rule {rule!r}; expected one of {REMOVAL_RULES}")
    if scores is None or len(scores) != n_train:
        raise ValueError(f"removal rule {rule!r} needs {n_train} scores")
    return top_k(scores, k)


def keep_mask(n_train: int, removed: np.ndarray) -> np.ndarray:
    """Boolean keep-mask (1, n_train), the subset-mask format that training reads (row 0)."""
    removed = np.asarray(removed, dtype=np.int64)
    if len(np.unique(removed)) != len(removed) or removed.min() < 0 or removed.max() >= n_train:
        raise ValueError(f"removed indices must be distinct and lie in [0, {n_train})")
    mask = np.ones((1, n_train), dtype=bool)
    mask[0, removed] = False
    return mask


def removal_table(
    removed: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray | None,
    trak_scores: np.ndarray,
) -> pd.DataFrame:
    """One row per removed example: rank, index, label, the rule's score (NaN for random) and
    its TRAK score (their sum is TRAK's linear prediction of the change in f_t)."""
    removed = np.asarray(removed, dtype=np.int64)
    return pd.DataFrame(
        {
            "rank": np.arange(len(removed)),
            "train_index": removed,
            "label": np.asarray(labels)[removed],
            "score": np.asarray(scores)[removed] if scores is not None else np.nan,
            "trak_score": np.asarray(trak_scores)[removed],
        },
        columns=REMOVAL_COLUMNS,
    )


def pair_scores(
    paths: tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike],
    target_id: int,
    grid: Sequence[int],
    step: int,
) -> np.ndarray:
    """Scores (n_train,) of generated target ``target_id`` at ``step``, from the score files
    ``paths`` = (scores.npy, index.csv, meta.json) (:func:`stepattr.trak.storage.load_scores`)."""
    scores, index, score_grid, _ = load_scores(*paths)
    if score_grid != [int(s) for s in grid]:
        raise ValueError(f"{paths[2]}: grid {score_grid} is not the targets' grid {list(grid)}")
    column = score_grid.index(int(step))
    return np.array(scores[score_row(index, target_id, "generated"), column], dtype=np.float64)


def write_removal(
    *,
    rule: str,
    pair: int,
    fraction: float,
    seed: int,
    pairs_path: str | os.PathLike,
    targets_path: str | os.PathLike,
    train_path: str | os.PathLike,
    trak_paths: tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike],
    rule_paths: tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike] | None,
    mask_path: str | os.PathLike,
    table_path: str | os.PathLike,
) -> pd.DataFrame:
    """Pick one pair's removed examples by ``rule`` and write the keep-mask and their table.

    ``trak_paths`` / ``rule_paths``: (scores.npy, index.csv, meta.json) of TRAK and of the rule's
    own scores (None for ``random``). Returns the table (:func:`removal_table`).
    """
    pairs = pd.read_csv(pairs_path)
    match = pairs[pairs["pair"] == pair]
    if len(match) != 1:
        raise ValueError(f"{pairs_path}: no row for pair {pair}")
    target_id, step = int(match["target_id"].iloc[0]), int(match["step"].iloc[0])
    grid = load_targets(targets_path, ("grid",))["grid"].tolist()
    _, labels, _ = load_split(train_path)
    n_train = len(labels)
    trak = pair_scores(trak_paths, target_id, grid, step)
    scores = pair_scores(rule_paths, target_id, grid, step) if rule_paths else None
    for name, row in (("TRAK", trak), (rule, scores)):
        if row is not None and len(row) != n_train:
            raise ValueError(f"{name} scores cover {len(row)} examples, {train_path} has {n_train}")
    k = removal_count(fraction, n_train)
    removed = select_removed(rule, k, n_train, scores, seed, target_id, step)
    table = removal_table(removed, labels, scores, trak)
    save_masks(mask_path, keep_mask(n_train, removed))
    save_csv(table_path, table)
    return table


# ----------------------------------------------------------------------------- evaluation


class IntervalModel(torch.nn.Module):
    """A UNet that is ``replacement`` at timesteps ``low < t <= high`` and ``original`` elsewhere.

    Rows of a batch are dispatched by their own timestep; the output has ``.sample`` like a
    diffusers UNet, so the ancestral sampler runs it unchanged.
    """

    def __init__(
        self, original: torch.nn.Module, replacement: torch.nn.Module, low: int, high: int
    ) -> None:
        super().__init__()
        self.original, self.replacement = original, replacement
        self.low, self.high = int(low), int(high)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
        inside = (t > self.low) & (t <= self.high)
        out = None
        for model, rows in ((self.replacement, inside), (self.original, ~inside)):
            if rows.any():
                eps = model(x[rows], t[rows]).sample
                out = eps.new_empty((x.shape[0], *eps.shape[1:])) if out is None else out
                out[rows] = eps
        return SimpleNamespace(sample=out)


def same_feature_count(
    unet: torch.nn.Module,
    schedule: Any,
    x_t: torch.Tensor,
    step: int,
    target_id: int,
    feature: int,
    detector: Detector,
    n: int,
    completion_steps: int,
    seed: int,
    batch_size: int,
) -> int:
    """How many of ``n`` completions of ``x_t`` (C, H, W) from ``step`` show ``feature``."""
    images = sample_completions(
        unet, schedule, x_t[None], step, [target_id], n, completion_steps, seed, batch_size
    )
    return int((detector.classify(images[0]) == feature).sum())


@torch.no_grad()
def evaluate_removal_model(
    model_id: str,
    model_dir: str | os.PathLike,
    original_dir: str | os.PathLike,
    targets_path: str | os.PathLike,
    pairs: pd.DataFrame,
    detector: Detector,
    *,
    resamples: int,
    output_seed: int,
    completions: int,
    completion_steps: int,
    completion_seed: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """f_t and same-feature counts (a) interval / (b) rest of one model on each pair.

    ``original_dir``: the model that generated the targets (full_0), used outside the
    interval in (a). Returns one row per pair, columns ``EVAL_COLUMNS``.
    """
    unet, schedule, _ = load_model(model_dir, device=device)
    original, _, _ = load_model(original_dir, device=device)
    targets = load_targets(targets_path, ("x_t", "x0hat", "x0", "grid", "target_id", "label"))
    grid = targets["grid"].tolist()
    row_of = {int(tid): r for r, tid in enumerate(targets["target_id"])}
    features = target_features(detector, targets["x0"], targets["label"])
    ac = schedule.alphas_cumprod
    rows = []
    for pair in tqdm(list(pairs.itertuples(index=False)), desc="pairs", disable=not progress):
        r, g = row_of[int(pair.target_id)], grid.index(int(pair.step))
        x0hat = torch.from_numpy(targets["x0hat"][r : r + 1, g : g + 1]).to(device)
        f = step_losses(
            eps_model(unet), x0hat, np.array([pair.target_id]), [pair.step], resamples,
            output_seed, ac, batch_size,
        )[0, 0]  # fmt: skip
        x_t = torch.from_numpy(targets["x_t"][r, g])
        counts = {
            name: same_feature_count(
                model,
                schedule,
                x_t,
                int(pair.step),
                int(pair.target_id),
                int(features[r]),
                detector,
                completions,
                completion_steps,
                completion_seed,
                batch_size,
            )  # fmt: skip
            for name, model in (
                ("same_interval", IntervalModel(original, unet, pair.t_low, pair.step)),
                ("same_rest", unet),
            )
        }
        rows.append(
            {
                "model_id": model_id,
                **pair._asdict(),
                "feature": int(features[r]),
                "f": float(f),
                **counts,
                "n": int(completions),
                "detector": detector.name,
            }
        )
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)
