"""Building a dataset's split files (train.npz, test.npz) and manifest.json from its config.

Everything is loaded and checked in memory first; only then are the files written, each
atomically (stepattr.core.io). If anything fails, the files this call wrote are removed again, so
a failed run leaves no split without its manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL

import stepattr
from stepattr.core.io import save_json, save_npz, sha256_file
from stepattr.datasets.base import DatasetError, LabeledImages
from stepattr.datasets.captions import (
    caption_matrix,
    caption_record,
    check_templates,
    template_captions,
)
from stepattr.datasets.cifar10 import load_cifar10
from stepattr.datasets.classes import select_classes
from stepattr.datasets.coco import CAPTIONS_MEMBER, load_coco
from stepattr.datasets.image_folder import load_image_folder
from stepattr.datasets.mnist5k import load_mnist5k
from stepattr.datasets.split import cap_classes, stratified_cap, stratified_split
from stepattr.datasets.transform import resize_square

log = logging.getLogger(__name__)


def prepare_dataset(
    cfg: Mapping[str, Any],
    train_path: str | Path,
    test_path: str | Path,
    manifest_path: str | Path,
) -> dict[str, Any]:
    """Write the train/test splits and manifest for the config's ``dataset`` section.

    Returns the manifest. Raises :class:`DatasetError` naming the file, key or value at fault.
    """
    train, test, origin, split = load_splits(cfg, scratch_parent=Path(train_path).parent)
    log.info("train: %s", train.counts())
    log.info("test: %s", test.counts())
    written: list[Path] = []
    try:
        files = {}
        for path, part in ((Path(train_path), train), (Path(test_path), test)):
            captions = {} if part.captions is None else {"captions": caption_matrix(part.captions)}
            save_npz(
                path,
                images=part.images,
                labels=part.labels,
                class_names=np.array(part.class_names, dtype=str),
                source_index=part.source_index,
                **captions,
            )
            written.append(path)
            files[path.name] = _file_record(path, part)
        manifest = {
            "dataset": cfg["name"],
            "source": cfg["source"],
            "origin": origin,
            "image_size": int(train.images.shape[-1]),
            "channels": int(train.images.shape[1]),
            "class_names": list(train.class_names),
            "split": split,
            "counts": {"train": train.counts(), "test": test.counts()},
            "captions": captions_origin(cfg, train, test),
            "files": files,
            "config": dict(cfg),
            "versions": {
                "stepattr": stepattr.__version__,
                "numpy": np.__version__,
                "pillow": PIL.__version__,
            },
        }
        save_json(manifest_path, manifest)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return manifest


def load_splits(
    cfg: Mapping[str, Any], scratch_parent: Path
) -> tuple[LabeledImages, LabeledImages, dict[str, Any], dict[str, Any]]:
    """Train and test images of the configured source, class subset and cap applied.

    Also returns where the images came from and how they were split (for the manifest).
    """
    source = cfg["source"]
    size = int(cfg["image_size"])
    seed = int(cfg["split_seed"])
    classes = cfg.get("classes")
    _check_caption_keys(cfg)
    if source == "cifar10":
        scratch_parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=scratch_parent) as scratch:
            train, test, origin = load_cifar10(_require(cfg, "url"), _require(cfg, "md5"), scratch)
        train, test = (_resized(select_classes(part, classes), size) for part in (train, test))
        split: dict[str, Any] = {"method": "official CIFAR-10 train/test"}
    else:
        fraction = float(_require(cfg, "test_fraction"))
        if source == "mnist5k":
            pool, origin = load_mnist5k()
            pool = _resized(select_classes(pool, classes), size)
        elif source == "image_folder":
            pool, origin = load_image_folder(
                _require(cfg, "path"),
                cfg.get("labels_csv"),
                int(cfg.get("channels", 3)),
                size,
                cfg.get("captions_csv"),
            )
            pool = select_classes(pool, classes)
        elif source == "coco":
            scratch_parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=scratch_parent) as scratch:
                pool, origin = load_coco(cfg, scratch, size, _coco_pool(cfg, fraction), seed)
        else:
            raise DatasetError(f"dataset.source = {source!r} is not a known source")
        train, test = stratified_split(pool, fraction, seed)
        split = {"method": "stratified by class", "seed": seed, "test_fraction": fraction}
    max_train = cfg.get("max_train")
    if max_train is not None:
        train = stratified_cap(train, int(max_train), seed)
        split["max_train"] = int(max_train)
    if cfg.get("class_max"):
        train = cap_classes(train, cfg["class_max"], seed)
        split["class_max"] = dict(cfg["class_max"])
    if cfg.get("caption_templates") is not None:
        train, test = (
            dataclasses.replace(
                part,
                captions=template_captions(part.labels, part.class_names, cfg["caption_templates"]),
            )
            for part in (train, test)
        )
    _check_nonempty(train, test, cfg)
    return train, test, origin, split


def _check_caption_keys(cfg: Mapping[str, Any]) -> None:
    """Captions come from one place: templates, an image folder's CSV, or COCO's own."""
    templates, csv_file = cfg.get("caption_templates"), cfg.get("captions_csv")
    if templates is not None and (csv_file is not None or cfg["source"] == "coco"):
        raise DatasetError(
            "dataset.caption_templates: this dataset already has captions "
            f"({'dataset.captions_csv' if csv_file is not None else 'COCO'}); set it to null"
        )
    if csv_file is not None and cfg["source"] != "image_folder":
        raise DatasetError(
            f"dataset.captions_csv is read only for source image_folder, not {cfg['source']}"
        )
    if templates is not None:
        check_templates(templates)


def captions_origin(
    cfg: Mapping[str, Any], train: LabeledImages, test: LabeledImages
) -> dict[str, Any] | None:
    """The manifest's record of the captions (None for an uncaptioned dataset)."""
    if train.captions is None:
        return None
    if cfg.get("caption_templates") is not None:
        origin = {"kind": "templates", "templates": list(cfg["caption_templates"])}
    elif cfg["source"] == "coco":
        origin = {"kind": "coco", "member": CAPTIONS_MEMBER}
    else:
        origin = {"kind": "captions_csv", "file": str(cfg["captions_csv"])}
    return caption_record([*train.captions, *(test.captions or ())], origin)


def _coco_pool(cfg: Mapping[str, Any], test_fraction: float) -> int | None:
    """Images to decode: enough for max_train after the test split (None = all)."""
    max_train = cfg.get("max_train")
    return None if max_train is None else math.ceil(int(max_train) / (1 - test_fraction)) + 1


def _resized(data: LabeledImages, size: int) -> LabeledImages:
    return dataclasses.replace(data, images=resize_square(data.images, size))


def _require(cfg: Mapping[str, Any], key: str) -> Any:
    if cfg.get(key) is None:
        raise DatasetError(f"dataset.{key} is required when dataset.source = {cfg['source']}")
    return cfg[key]


def _check_nonempty(train: LabeledImages, test: LabeledImages, cfg: Mapping[str, Any]) -> None:
    empty = [name for name, n in train.counts().items() if n == 0]
    if empty:
        raise DatasetError(
            f"class {empty[0]!r} has no training images "
            f"(dataset.max_train = {cfg.get('max_train')}, dataset.test_fraction = "
            f"{cfg.get('test_fraction')})"
        )
    if len(test.labels) == 0:
        raise DatasetError("the test split is empty: raise dataset.test_fraction or add images")


def _file_record(path: Path, part: LabeledImages) -> dict[str, Any]:
    """File checksum, plus checksums of the arrays (stable across rewrites of the same data)."""
    return {
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "images": list(part.images.shape),
        "images_sha256": _array_sha256(part.images),
        "labels_sha256": _array_sha256(part.labels),
    }


def _array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
