"""Seeded, class-stratified sampling: the train/test split and the cap on training images."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from stepattr.datasets.base import DatasetError, LabeledImages

SPLIT_STREAM, CAP_STREAM = 0, 1  # independent random streams derived from dataset.split_seed


def stratified_split(
    data: LabeledImages, test_fraction: float, seed: int
) -> tuple[LabeledImages, LabeledImages]:
    """Hold out ``round(test_fraction * n_c)`` images of each class c; one at least stays in train.

    Both parts keep the source order, so the same seed gives byte-identical splits.
    """
    if not 0 < test_fraction < 1:
        raise DatasetError(f"dataset.test_fraction = {test_fraction} must lie in (0, 1)")
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    is_test = np.zeros(len(data.labels), dtype=bool)
    for c in range(len(data.class_names)):
        members = np.flatnonzero(data.labels == c)
        n_test = min(_round_half_up(test_fraction * len(members)), len(members) - 1)
        if n_test > 0:
            is_test[rng.choice(members, size=n_test, replace=False)] = True
    return data.take(np.flatnonzero(~is_test)), data.take(np.flatnonzero(is_test))


def stratified_cap(data: LabeledImages, max_images: int, seed: int) -> LabeledImages:
    """Keep ``max_images`` images with the class proportions of ``data`` (largest remainders)."""
    if max_images >= len(data.labels):
        return data
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    quota = counts * max_images / counts.sum()
    keep = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - keep), kind="stable")
    keep[by_remainder[: max_images - keep.sum()]] += 1
    rng = np.random.default_rng([seed, CAP_STREAM])
    chosen = [
        rng.choice(np.flatnonzero(data.labels == c), size=int(k), replace=False)
        for c, k in enumerate(keep)
    ]
    return data.take(np.sort(np.concatenate(chosen)))


def cap_classes(data: LabeledImages, caps: Mapping[str, int], seed: int) -> LabeledImages:
    """Keep at most ``caps[name]`` images of each named class (seeded draw); other classes
    keep all: a class-skewed set, e.g. a fine-tuning folder that is mostly one class."""
    unknown = sorted(set(caps) - set(data.class_names))
    if unknown:
        raise DatasetError(
            f"dataset.class_max names {unknown}, which are not classes of this dataset "
            f"({', '.join(data.class_names)})"
        )
    rng = np.random.default_rng([seed, CAP_STREAM])
    chosen = []
    for c, name in enumerate(data.class_names):
        rows = np.flatnonzero(data.labels == c)
        if name in caps and len(rows) > int(caps[name]):
            rows = rng.choice(rows, size=int(caps[name]), replace=False)
        chosen.append(rows)
    return data.take(np.sort(np.concatenate(chosen)))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))
