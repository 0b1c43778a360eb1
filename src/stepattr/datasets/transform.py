"""Resizing with PIL: whole square arrays (MNIST, CIFAR) and single photos (image folders).

Downscaling uses Lanczos, whose support PIL widens by the reduction factor, so it is
antialiased (no aliasing of thin strokes) rather than a point sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stepattr.datasets.base import DatasetError

RESAMPLE = Image.Resampling.LANCZOS


def resize_square(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, C, H, W) square images to (N, C, size, size); no-op at the same size."""
    if images.shape[-2:] == (size, size):
        return images
    out = np.empty((*images.shape[:2], size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = image_to_chw(chw_to_image(image).resize((size, size), RESAMPLE))
    return out


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size``, then cut the central ``size`` x ``size`` square."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), RESAMPLE)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def chw_to_image(image: np.ndarray) -> Image.Image:
    """uint8 (C, H, W), C in {1, 3} -> PIL image (mode L or RGB)."""
    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def image_to_chw(image: Image.Image) -> np.ndarray:
    """PIL image (mode L or RGB) -> uint8 (C, H, W)."""
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_image(source: str | Path | BinaryIO, mode: str, size: int, where: str) -> np.ndarray:
    """One stored photo as uint8 (C, size, size): turned upright (EXIF), converted to ``mode``
    (L or RGB), resized and center-cropped; an unreadable one is an error naming ``where``."""
    try:
        with Image.open(source) as image:
            image.load()
            upright = ImageOps.exif_transpose(image).convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{where}: unreadable image ({err})") from err
    return image_to_chw(resize_center_crop(upright, size))
