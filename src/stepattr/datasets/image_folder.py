"""image_folder: a user's folder of PNG/JPEG images, optionally labelled by a CSV (file,label)
and captioned by another (file,caption).

Every image is read, turned upright (EXIF orientation), converted to grayscale or RGB, its
shorter side scaled to the configured size and the center square cut out. Without a labels
CSV all images form one class named after the folder; with one, the CSV lists the dataset:
every row must name an existing image, and every image in the folder must have a row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from stepattr.core.io import sha256_file
from stepattr.datasets.base import DatasetError, LabeledImages, folder_csv_path
from stepattr.datasets.captions import read_captions_csv
from stepattr.datasets.transform import decode_image

EXTENSIONS = (".png", ".jpg", ".jpeg")
MODES = {1: "L", 3: "RGB"}


def load_image_folder(
    folder: str | Path,
    labels_csv: str | Path | None,
    channels: int,
    size: int,
    captions_csv: str | Path | None = None,
) -> tuple[LabeledImages, dict[str, Any]]:
    """Every labelled image as uint8 (N, channels, size, size); class names sorted.

    ``captions_csv`` (a file inside the folder when relative, like ``labels_csv``): its
    captions, every image needing one (:func:`stepattr.datasets.captions.read_captions_csv`).
    """
    if channels not in MODES:
        raise DatasetError(f"dataset.channels = {channels} must be 1 or 3")
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"dataset.path = {str(folder)!r} is not a folder")
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in EXTENSIONS
    )
    if not files:
        raise DatasetError(f"{root}: no PNG or JPEG images ({', '.join(EXTENSIONS)}) in folder")
    if labels_csv is None:
        labels_of = dict.fromkeys(files, root.resolve().name or "images")
        provenance: dict[str, Any] = {"path": str(root)}
    else:
        labels_csv = folder_csv_path(root, labels_csv)
        labels_of = read_labels_csv(labels_csv, root, files)
        provenance = {
            "path": str(root),
            "labels_csv": str(labels_csv),
            "labels_csv_sha256": sha256_file(labels_csv),
        }
    class_names = tuple(sorted(set(labels_of.values())))
    images = np.stack([read_image(root / f, MODES[channels], size) for f in tqdm(files, "images")])
    labels = np.array([class_names.index(labels_of[f]) for f in files], dtype=np.int64)
    provenance["files"] = len(files)
    captions = None
    if captions_csv is not None:
        captions_csv = folder_csv_path(root, captions_csv)
        by_file = read_captions_csv(captions_csv, root, files)
        captions = tuple(tuple(by_file[f]) for f in files)
        provenance["captions_csv"] = str(captions_csv)
        provenance["captions_csv_sha256"] = sha256_file(captions_csv)
    index = np.arange(len(files), dtype=np.int64)
    data = LabeledImages(images, labels, class_names, index, captions)
    return data, provenance


def read_labels_csv(path: Path, root: Path, files: list[str]) -> dict[str, str]:
    """Map file (relative to the folder) -> label; every row and every image checked."""
    if not path.is_file():
        raise DatasetError(f"dataset.labels_csv = {str(path)!r} is not a file")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: needs a header with columns file,label")
        labels: dict[str, str] = {}
        for row in reader:
            line = reader.line_num
            name = Path((row["file"] or "").strip()).as_posix()
            label = (row["label"] or "").strip()
            if not label or name in ("", "."):
                raise DatasetError(f"{path}:{line}: empty file or label")
            if not (root / name).resolve().is_relative_to(root.resolve()):
                raise DatasetError(f"{path}:{line}: file {name!r} lies outside {root}")
            if not (root / name).is_file():
                raise DatasetError(f"{path}:{line}: file {name!r} does not exist in {root}")
            if Path(name).suffix.lower() not in EXTENSIONS:
                raise DatasetError(f"{path}:{line}: file {name!r} is not a PNG or JPEG")
            if name in labels:
                raise DatasetError(f"{path}:{line}: file {name!r} is listed twice")
            labels[name] = label
    unlabeled = [f for f in files if f not in labels]
    if unlabeled:
        raise DatasetError(
            f"{path}: {len(unlabeled)} image(s) in {root} have no row, e.g. {unlabeled[0]!r}"
        )
    if not labels:
        raise DatasetError(f"{path}: no rows")
    return labels


def read_image(path: Path, mode: str, size: int) -> np.ndarray:
    """One image as uint8 (C, size, size); an unreadable file is an error naming it."""
    return decode_image(path, mode, size, str(path))
