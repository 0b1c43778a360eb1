"""Captions of a captioned dataset (the text-to-image family): one or more per image.

Three sources: templates over the class names (``dataset.caption_templates``; the captioned
digits of the CPU default, which the manifest names as template captions), a CSV of an image
folder (``dataset.captions_csv``, header ``file,caption``, one row per caption) and COCO's
captions JSON (:mod:`.coco`). The split files store them as ``captions``, a (N, C) string
array whose row i holds image i's captions padded with "" (C: the most any image has);
:func:`stepattr.core.images.load_captions` reads them back.
"""

from __future__ import annotations

import csv
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stepattr.datasets.base import DatasetError

PLACEHOLDER = "{}"


def check_templates(templates: Sequence[str]) -> list[str]:
    """The templates, each with exactly one ``{}`` (the class name) and no other field."""
    if not templates:
        raise DatasetError("dataset.caption_templates is empty: give at least one, or use null")
    for i, template in enumerate(templates):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as err:
            raise DatasetError(f"dataset.caption_templates[{i}] = {template!r}: {err}") from err
        if fields != [""]:
            raise DatasetError(
                f"dataset.caption_templates[{i}] = {template!r} must hold exactly one "
                f"{PLACEHOLDER} (the class name) and no other field"
            )
    return [str(t) for t in templates]


def template_captions(
    labels: np.ndarray, class_names: Sequence[str], templates: Sequence[str]
) -> tuple[tuple[str, ...], ...]:
    """Every template filled with each image's class name: len(templates) captions per image."""
    templates = check_templates(templates)
    per_class = [tuple(t.format(name) for t in templates) for name in class_names]
    return tuple(per_class[int(label)] for label in labels)


def read_captions_csv(path: Path, root: Path, files: Sequence[str]) -> dict[str, list[str]]:
    """Map file (relative to the folder) -> its captions, in file order; every row checked and
    every image required to have at least one caption."""
    if not path.is_file():
        raise DatasetError(f"dataset.captions_csv = {str(path)!r} is not a file")
    known = set(files)
    captions: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "caption"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: needs a header with columns file,caption")
        for row in reader:
            name = Path((row["file"] or "").strip()).as_posix()
            caption = " ".join((row["caption"] or "").split())
            if name not in known:
                raise DatasetError(
                    f"{path}:{reader.line_num}: caption for {name!r}, which is not an image "
                    f"in {root}"
                )
            if not caption:
                raise DatasetError(f"{path}:{reader.line_num}: empty caption for {name!r}")
            captions.setdefault(name, []).append(caption)
    missing = [f for f in files if f not in captions]
    if missing:
        raise DatasetError(
            f"{path}: {len(missing)} image(s) in {root} have no caption, e.g. {missing[0]!r}"
        )
    return captions


def caption_matrix(captions: Sequence[Sequence[str]]) -> np.ndarray:
    """(N, C) string array of the captions, each row padded with "" to the longest row."""
    width = max((len(c) for c in captions), default=1)
    return np.array([list(c) + [""] * (width - len(c)) for c in captions], dtype=str).reshape(
        len(captions), width
    )


def caption_record(captions: Sequence[Sequence[str]], origin: dict) -> dict:
    """The manifest's ``captions`` entry: where they came from and how many per image."""
    per_image = [len(c) for c in captions]
    return {**origin, "per_image": {"min": min(per_image), "max": max(per_image)}}
