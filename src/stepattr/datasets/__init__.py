"""Datasets of the workflow: mnist5k (embedded default), cifar10 (official tarball), image_folder.

Each source module loads images as uint8 (N, C, H, W) with int64 labels; :mod:`.prepare`
applies the class subset, the seeded stratified split and cap, and writes the split files and
manifest that every later rule reads (``stepattr.images.load_split``).
"""

from stepattr.datasets.base import DatasetError, LabeledImages
from stepattr.datasets.prepare import load_splits, prepare_dataset

__all__ = ["DatasetError", "LabeledImages", "load_splits", "prepare_dataset"]
