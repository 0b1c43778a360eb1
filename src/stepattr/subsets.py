"""Random training subsets for the linear datamodeling score (LDS).

Row ``j`` of the boolean matrix (subsets, n_train) marks a subset of exactly
``round(alpha * n_train)`` examples drawn without replacement by the generator keyed
(subsets.seed, j); rows ``< count`` are scored, the rest are held out to choose lambda.
Each subset gets ``seeds`` models; model ``s`` of every subset is seeded by (subsets.seed, s)
alone: all subsets share the initial weights and random stream of seed index s (common random
numbers), so the differences between subset models come from their data, not from their seeds.
With few small models this variance reduction is what lets the LDS see the data's effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stepattr.seeds import SUBSET_MASK, SUBSET_MODEL, derive_seed, numpy_rng


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
