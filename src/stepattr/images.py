"""Conversions between stored images (uint8, N x C x H x W) and model space (float in [-1, 1])."""

from __future__ import annotations

import os

import numpy as np
import torch


def to_model_space(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    tensor = torch.as_tensor(np.asarray(images))
    return tensor.to(torch.float32).div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (clipped, rounded)."""
    array = np.asarray(torch.as_tensor(images).detach().cpu().float())
    return np.clip(np.round((array + 1.0) * 127.5), 0, 255).astype(np.uint8)


def load_split(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a dataset split written by the data rules: images, labels, class names."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"images", "labels", "class_names"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a dataset split (missing {sorted(missing)})")
        return data["images"], data["labels"], [str(c) for c in data["class_names"]]
