"""Choosing a subset of classes by name (CIFAR-2 = automobile + horse) and re-indexing labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from stepattr.datasets.base import DatasetError, LabeledImages


def select_classes(data: LabeledImages, wanted: Sequence[str] | None) -> LabeledImages:
    """Keep the images of ``wanted`` classes; label i is ``wanted[i]`` afterwards.

    ``None`` keeps every class. An unknown or repeated name is an error naming it.
    """
    if wanted is None:
        return data
    wanted = [str(name) for name in wanted]
    if not wanted:
        raise DatasetError("dataset.classes is empty: name at least one class, or use null")
    unknown = [name for name in wanted if name not in data.class_names]
    if unknown:
        raise DatasetError(
            f"dataset.classes: unknown class {unknown[0]!r}; valid classes: "
            + ", ".join(data.class_names)
        )
    repeated = sorted({name for name in wanted if wanted.count(name) > 1})
    if repeated:
        raise DatasetError(f"dataset.classes: class {repeated[0]!r} is listed more than once")
    old_to_new = np.full(len(data.class_names), -1, dtype=np.int64)
    for new, name in enumerate(wanted):
        old_to_new[data.class_names.index(name)] = new
    kept = data.take(np.flatnonzero(old_to_new[data.labels] >= 0))
    return dataclasses.replace(kept, labels=old_to_new[kept.labels], class_names=tuple(wanted))
