"""coco: MS-COCO 2017 train images with their captions, from the official archives.

Two archives, each MD5-checked before it is opened (:mod:`.download`): the images
(``train2017.zip``, members ``train2017/<file_name>``) and the annotations
(``annotations_trainval2017.zip``, member ``annotations/captions_train2017.json``). Nothing
is unpacked to disk: the captions JSON and the chosen images are read from the archives in
memory. Every image keeps all its captions (five for most). COCO has no classes: every image
gets label 0 of one class named ``coco``, so the stratified split and cap are plain seeded ones.
``pool``: how many images to decode, a seeded choice among those with captions (None = all);
the split and ``max_train`` then apply to them as to any source.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from stepattr.datasets.base import DatasetError, LabeledImages
from stepattr.datasets.download import verified_archive
from stepattr.datasets.transform import decode_image

CAPTIONS_MEMBER = "annotations/captions_train2017.json"
IMAGES_FOLDER = "train2017"
CLASS_NAMES = ("coco",)
POOL_STREAM = 2  # after stepattr.datasets.split's SPLIT_STREAM, CAP_STREAM


def load_coco(
    cfg: Mapping[str, Any], scratch_dir: str | Path, size: int, pool: int | None, seed: int
) -> tuple[LabeledImages, dict[str, Any]]:
    """``pool`` captioned COCO images as uint8 (N, 3, size, size), and their provenance."""
    annotations, ann_digests = verified_archive(
        cfg["annotations_url"], cfg["annotations_md5"], scratch_dir,
        "dataset.annotations_url", "dataset.annotations_md5",
    )  # fmt: skip
    files, captions = read_captions(annotations, cfg["annotations_url"])
    ids = np.array(sorted(files), dtype=np.int64)
    if pool is not None and pool < len(ids):
        rng = np.random.default_rng([seed, POOL_STREAM])
        ids = np.sort(rng.choice(ids, size=pool, replace=False))
    images_zip, img_digests = verified_archive(
        cfg["images_url"],
        cfg["images_md5"],
        scratch_dir,
        "dataset.images_url",
        "dataset.images_md5",
    )
    images = read_images(images_zip, cfg["images_url"], [files[i] for i in ids], size)
    data = LabeledImages(
        images,
        np.zeros(len(ids), dtype=np.int64),
        CLASS_NAMES,
        ids,
        tuple(tuple(captions[i]) for i in ids),
    )
    provenance = {
        "annotations_url": cfg["annotations_url"],
        "annotations": ann_digests,
        "images_url": cfg["images_url"],
        "images": img_digests,
        "captioned_images": len(files),
        "source_index": "COCO image id",
    }
    return data, provenance


def read_captions(archive: Path, url: str) -> tuple[dict[int, str], dict[int, list[str]]]:
    """image id -> file name, and image id -> its captions, for the images that have any."""
    where = f"{url}:{CAPTIONS_MEMBER}"
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(CAPTIONS_MEMBER) as handle:
            doc = json.load(handle)
    except KeyError:
        raise DatasetError(f"{url}: the archive has no member {CAPTIONS_MEMBER}") from None
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{where}: unreadable ({err})") from err
    if not isinstance(doc, dict) or not {"images", "annotations"} <= set(doc):
        raise DatasetError(f"{where}: expected a COCO captions file (keys images, annotations)")
    try:
        files = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
        captions: dict[int, list[str]] = {}
        for ann in doc["annotations"]:
            image_id, caption = int(ann["image_id"]), " ".join(str(ann["caption"]).split())
            if image_id not in files:
                raise DatasetError(
                    f"{where}: annotation {ann.get('id')} captions image id {image_id}, "
                    "which the file does not list"
                )
            if not caption:
                raise DatasetError(f"{where}: annotation {ann.get('id')} has an empty caption")
            captions.setdefault(image_id, []).append(caption)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{where}: malformed image or annotation entry ({err!r})") from err
    if not captions:
        raise DatasetError(f"{where}: no captions")
    return {i: files[i] for i in captions}, captions


def read_images(archive: Path, url: str, names: list[str], size: int) -> np.ndarray:
    """The named images of the archive's train2017 folder as uint8 (N, 3, size, size)."""
    out = np.empty((len(names), 3, size, size), dtype=np.uint8)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
            for i, name in enumerate(tqdm(names, desc="images")):
                member = f"{IMAGES_FOLDER}/{name}"
                if member not in members:
                    raise DatasetError(
                        f"{CAPTIONS_MEMBER} captions {name}, which {url} does not hold "
                        f"(no member {member})"
                    )
                out[i] = decode_image(io.BytesIO(zf.read(member)), "RGB", size, f"{url}:{member}")
    except zipfile.BadZipFile as err:
        raise DatasetError(f"{url}: not a zip archive ({err})") from err
    return out
