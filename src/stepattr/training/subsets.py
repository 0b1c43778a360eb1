"""Random training subsets for the linear datamodeling score (LDS).

Row ``j`` of the boolean matrix (subsets, n_train) marks a subset of exactly
``round(alpha * n_train)`` examples drawn without replacement by the generator keyed
(subsets.seed, j); rows ``< count`` are scored, the rest are held out to choose lambda.
Each subset gets ``seeds`` models; model ``s`` of every subset is seeded by (subsets.seed, s)
alone: all subsets share the initial weights and random stream of seed index s (common random
numbers), so the differences between subset models come from their data, not from their seeds.
With few small models this variance reduction is what lets the LDS see the data's effect.

The mask files (``subsets/masks.npy``, and the counterfactual's one-row removal masks) have one
writer, :func:`save_masks`, and one reader, :func:`load_masks` (:func:`load_subset_row` for a
training job's row).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stepattr.core.io import save_npy
from stepattr.core.seeds import SUBSET_MASK, SUBSET_MODEL, derive_seed, numpy_rng


def subset_size(n_train: int, alpha: float) -> int:
    """Examples per subset: ``round(alpha * n)``, at least 1 and at most n - 1."""
    if not 0 < alpha < 1:
        raise ValueError(f"subsets.alpha = {alpha} must lie in (0, 1)")
    if n_train < 2:
        raise ValueError(f"cannot draw proper subsets of {n_train} training example(s)")
    return min(max(round(alpha * n_train), 1), n_train - 1)


def subset_masks(n_train: int, count: int, heldout: int, alpha: float, seed: int) -> np.ndarray:
    """Boolean matrix (count + heldout, n_train): one random subset per row."""
    size = subset_size(n_train, alpha)
    masks = np.zeros((count + heldout, n_train), dtype=bool)
    for row in range(count + heldout):
        masks[row, numpy_rng(SUBSET_MASK, seed, row).choice(n_train, size, replace=False)] = True
    return masks


def subset_table(masks: np.ndarray, count: int, seed: int) -> pd.DataFrame:
    """One line per row: role (scored | heldout), size, and the seed its draw was keyed by."""
    return pd.DataFrame(
        {
            "row": np.arange(len(masks)),
            "role": ["scored" if j < count else "heldout" for j in range(len(masks))],
            "size": masks.sum(axis=1),
            "seed": seed,
        }
    )


def subset_model_seed(subsets_seed: int, seed_index: int) -> int:
    """Training seed of model ``subset_{row}_s{seed_index}``: the same for every row."""
    return derive_seed(SUBSET_MODEL, subsets_seed, seed_index)


def save_masks(path: str | os.PathLike, masks: np.ndarray) -> None:
    """Write a boolean subset (or keep) matrix (rows, n_train)."""
    masks = np.asarray(masks)
    if masks.dtype != np.bool_ or masks.ndim != 2:
        raise ValueError(f"{path}: expected a bool matrix (rows, n_train), got {masks.dtype}")
    save_npy(path, masks)


def load_masks(
    path: str | os.PathLike, rows: Sequence[int] | None = None, n_train: int | None = None
) -> np.ndarray:
    """Rows ``rows`` (all where None) of a boolean mask matrix, checked (memory-mapped read)."""
    matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    if matrix.dtype != np.bool_ or matrix.ndim != 2 or n_train not in (None, matrix.shape[1]):
        raise ValueError(
            f"{path}: expected a bool matrix (subsets, {n_train or 'n_train'}), "
            f"got {matrix.dtype} {matrix.shape}"
        )
    rows = range(matrix.shape[0]) if rows is None else [int(r) for r in rows]
    missing = [r for r in rows if not 0 <= r < matrix.shape[0]]
    if missing:
        raise ValueError(f"{path}: no subset row {missing[0]} (it has {matrix.shape[0]})")
    return np.array(matrix[list(rows)])


def load_subset_row(masks: str | os.PathLike | None, row: int, n_train: int) -> np.ndarray:
    """Row ``row`` of the boolean subset matrix, checked against the training split's size."""
    if masks is None:
        raise ValueError("a subset row was given without the subset mask file")
    return load_masks(masks, [row], n_train)[0]
