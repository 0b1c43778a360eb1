"""Patch attribution (docs/method.md, f_t with a mask): which training images shape one region.

The target output function at step t becomes ``f_t^M = sum_r mean_pixels(M * (eps(x_t^r, t)
- e_r))^2`` with a 0/1 mask M over a pixel box, the rest unchanged (same x0hat_t, same R noises
per target and step as the unmasked features). Only the target side changes: the patch
features go through the same featurizer (same model, same projection) as the train features
already computed, and are scored with the same kernel and lambda. The patches of a target are
the named boxes of ``figures.patches`` plus, with ``figures.quadrants``, the four quadrants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stepattr.core.names import attribution_methods, influence_methods
from stepattr.core.settings import settings_from
from stepattr.trak.features import Featurizer, target_features

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class FiguresSettings:
    """The ``figures`` section (config/schema.yaml), typed once where a job starts; ``patches``
    maps each name to its box ``(x0, y0, x1, y1)`` in config order."""

    method: str | None
    top_k: int
    targets_per_set: int | None
    overview_targets: tuple[int, ...]
    frame_ms: int
    patch_targets: tuple[int, ...]
    patch_steps: tuple[int, ...]
    quadrants: bool
    patches: Mapping[str, tuple[int, ...]]

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> FiguresSettings:
        boxes = {str(name): tuple(int(v) for v in box) for name, box in section["patches"].items()}
        return settings_from(cls, dict(section) | {"patches": boxes}, "figures")


@dataclass(frozen=True)
class Patch:
    """A named pixel box ``(x0, y0, x1, y1)``: columns x0..x1-1, rows y0..y1-1."""

    name: str
    box: tuple[int, int, int, int]


def quadrant_patches(size: int) -> list[Patch]:
    """The four quadrants of a ``size`` x ``size`` image (the lower-right ones take the odd row
    and column), so together they cover every pixel exactly once."""
    m = size // 2
    boxes = [(0, 0, m, m), (m, 0, size, m), (0, m, m, size), (m, m, size, size)]
    return [Patch(name, box) for name, box in zip(QUADRANTS, boxes, strict=True)]


def configured_patches(figures: FiguresSettings, size: int) -> list[Patch]:
    """The named boxes of ``figures.patches`` (config order), then the quadrants if asked."""
    patches = [Patch(name, box) for name, box in figures.patches.items()]
    if figures.quadrants:
        patches += quadrant_patches(size)
    return patches


def patch_mask(patch: Patch, size: int) -> np.ndarray:
    """(size, size) float32 mask: 1 inside the box, 0 outside."""
    x0, y0, x1, y1 = patch.box
    mask = np.zeros((size, size), dtype=np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def check_figures_config(cfg: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the ``figures`` key whose value cannot work with the rest."""
    fig, sampling = cfg["figures"], cfg["sampling"]
    size = int(cfg["dataset"]["image_size"])
    total = int(sampling["num_targets"]) + int(sampling["num_validation"])
    for key in ("overview_targets", "patch_targets"):
        bad = [t for t in fig[key] if not 0 <= t < total]
        if bad:
            raise ValueError(
                f"figures.{key} = {bad} are not target ids: there are {total} targets "
                f"(generated 0..{sampling['num_targets'] - 1}, validation after)"
            )
    off = [s for s in fig["patch_steps"] if s not in sampling["grid"]]
    if off:
        raise ValueError(f"figures.patch_steps {off} are not in sampling.grid {sampling['grid']}")
    for name, box in fig["patches"].items():
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
            raise ValueError(
                f"figures.patches.{name} = {list(box)} is not a box [x0, y0, x1, y1] with "
                f"0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size} (dataset.image_size)"
            )
        if fig["quadrants"] and name in QUADRANTS:
            raise ValueError(f"figures.patches.{name}: the name is taken by a quadrant")
    if fig["patch_targets"] and not (fig["patches"] or fig["quadrants"]):
        raise ValueError(
            "figures.patch_targets is set but there are no patches "
            "(figures.patches is empty and figures.quadrants is false)"
        )
    methods = attribution_methods(cfg["attribution"]) + influence_methods(cfg)
    if fig["method"] is not None and fig["method"] not in methods:
        raise ValueError(
            f"figures.method = {fig['method']!r} is not a TRAK or influence method of this "
            f"run {methods}"
        )


def patch_target_features(
    featurizer: Featurizer,
    x0hat: torch.Tensor,
    target_ids: Sequence[int],
    steps: Sequence[int],
    patches: Sequence[Patch],
    num_draws: int,
    seed: int,
    batch_size: int,
) -> np.ndarray:
    """Masked target features ``(N, P, S, k)``: target n, patch p, step ``steps[s]``.

    ``x0hat`` (N, S, C, H, W) holds each target's one-step estimates at ``steps``. The noises
    are those of the unmasked target features (seeded by target id and step), so a mask of
    ones gives exactly the unmasked features.
    """
    size = x0hat.shape[-1]
    per_patch = [
        target_features(
            featurizer,
            x0hat,
            target_ids,
            steps,
            num_draws,
            seed,
            batch_size,
            mask=torch.from_numpy(patch_mask(patch, size)),
        )
        for patch in patches
    ]
    return np.stack(per_patch, axis=1)
