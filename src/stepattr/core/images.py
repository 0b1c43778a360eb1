"""Conversions between stored images (uint8, N x C x H x W) and model space (float in [-1, 1]).

Also image grids (PNG) for looking at samples.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from stepattr.core.io import atomic_path

if TYPE_CHECKING:  # torch is imported where tensors are made, so data-only rules need no torch
    import torch


def to_model_space(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    import torch

    tensor = torch.as_tensor(np.asarray(images))
    return tensor.to(torch.float32).div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (clipped, rounded)."""
    if hasattr(images, "detach"):  # a torch tensor, possibly on a GPU
        images = images.detach().cpu().float().numpy()
    array = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((array + 1.0) * 127.5), 0, 255).astype(np.uint8)


def load_split(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a dataset split written by the data rules: images, labels, class names."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"images", "labels", "class_names"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a dataset split (missing {sorted(missing)})")
        return data["images"], data["labels"], [str(c) for c in data["class_names"]]


def load_captions(path: str | os.PathLike) -> list[list[str]]:
    """Each image's captions from a captioned split (stepattr.datasets.captions: the padded
    (N, C) ``captions`` array); an error naming the file if the dataset has none."""
    with np.load(path, allow_pickle=False) as data:
        if "captions" not in data.files:
            raise ValueError(
                f"{path}: the dataset has no captions (dataset.caption_templates, "
                "dataset.captions_csv or source coco give it some)"
            )
        return [[str(c) for c in row if c] for row in data["captions"]]


def image_grid(images: np.ndarray, ncol: int = 8, scale: int = 1, pad: int = 1) -> np.ndarray:
    """Tile uint8 images (N, C, H, W) into one (H', W', C) array, each upscaled ``scale``x.

    Tiles are enlarged by pixel repetition (no smoothing), so small digits stay legible.
    Empty cells of the last row and the ``pad``-pixel gutters are black.
    """
    n, c, h, w = images.shape
    big = images.repeat(scale, axis=2).repeat(scale, axis=3)
    nrow = -(-n // ncol)
    hs, ws = h * scale + pad, w * scale + pad
    grid = np.zeros((nrow * hs + pad, ncol * ws + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[
            pad + r * hs : pad + r * hs + h * scale, pad + col * ws : pad + col * ws + w * scale
        ] = big[i].transpose(1, 2, 0)
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray, ncol: int = 8, scale: int = 1
) -> None:
    """Write :func:`image_grid` of uint8 images as a PNG, atomically."""
    grid = image_grid(images, ncol=ncol, scale=scale)
    with atomic_path(path) as tmp:
        Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).save(tmp, format="PNG")
