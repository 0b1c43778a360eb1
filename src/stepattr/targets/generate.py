"""Attribution targets: generated images with their sampling trajectories, and real test images.

One uncompressed ``.npz`` per target set, ``{TARGETS}/{set}.npz`` (N targets, G grid steps,
images C x H x W in model space [-1, 1]):

==============  =======  ================  ===============================================
key             dtype    shape             meaning
==============  =======  ================  ===============================================
``x_t``         float32  (N, G, C, H, W)   latent at step ``grid[g]`` (before denoising it)
``x0hat``       float32  (N, G, C, H, W)   one-step estimate of x_0 from ``x_t`` at that step
``x0``          float32  (N, C, H, W)      the target image
``grid``        int64    (G,)              the attribution steps, in config order
``target_id``   int64    (N,)              global target number, unique across sets
``label``       int64    (N,)              class index, -1 where unknown
``source_index``int64    (N,)              test-split index (validation), -1 (generated)
==============  =======  ================  ===============================================

The text-to-image family's targets (:func:`stepattr.targets.prompts.prompted_targets`) are
latents (unclipped) and carry four more keys: ``prompt`` (N,) str, the text whose states
condition f_t; ``decoded_x_t``, ``decoded_x0hat`` (N, G, c, h, w) and ``decoded_x0``
(N, c, h, w) float32, the autoencoder's images of x_t, x0hat_t and x_0 in [-1, 1] (what
figures and pixel baselines show).

``generated``: ancestral DDPM sampling with model ``full_0`` on the sampler schedule
``Schedule.inference_timesteps(sampling.inference_steps)``; ``x0hat[:, g]`` is
``clip((x_t - sqrt(1 - a_t) eps(x_t, t)) / sqrt(a_t), -1, 1)`` at ``t = grid[g]`` (diffusers'
``pred_original_sample``) and ``x0`` the final sample. Target ids 0..N-1, labels -1. Chunk
``c`` of ``SAMPLE_BATCH`` targets draws x_T and all its noises from the generator keyed
(sampling.seed, c).

``validation``: real test images picked class by class in turn (seeded), ``x0hat[:, g] = x0``
at every step and ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) n`` with a noise keyed by
(sampling.seed, target id, g). Target ids continue after the generated ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from stepattr.core.diffusion import Schedule, add_noise, sample
from stepattr.core.images import save_image_grid, to_model_space, to_uint8
from stepattr.core.io import save_npz
from stepattr.core.seeds import (
    GENERATED_TARGETS,
    VALIDATION_NOISE,
    VALIDATION_PICK,
    derive_seed,
    numpy_rng,
)

SAMPLE_BATCH = 256
FIELDS = {  # key: (dtype, ndim)
    "x_t": (np.float32, 5),
    "x0hat": (np.float32, 5),
    "x0": (np.float32, 4),
    "grid": (np.int64, 1),
    "target_id": (np.int64, 1),
    "label": (np.int64, 1),
    "source_index": (np.int64, 1),
}
TEXT_TO_IMAGE_FIELDS = {  # the text-to-image family's extra keys: (dtype kind, ndim)
    "prompt": ("U", 1),
    "decoded_x_t": (np.float32, 5),
    "decoded_x0hat": (np.float32, 5),
    "decoded_x0": (np.float32, 4),
}
GRID_TILE_PIXELS = 64  # PNG grids upscale each image to at least this many pixels


def generate_images(
    unet: torch.nn.Module,
    schedule: Schedule,
    num: int,
    inference_steps: int,
    seed: int,
    record: Sequence[int] = (),
    stream: int = GENERATED_TARGETS,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Sample ``num`` images (chunks of ``SAMPLE_BATCH`` keyed by (stream, seed, chunk)).

    Returns x_0 (num, C, H, W) and, for each step in ``record``, stacked (x_t, x0hat_t).
    """
    cfg = unet.config
    shape = (int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size))
    timesteps = schedule.inference_timesteps(inference_steps)
    finals, recorded = [], {t: ([], []) for t in record}
    for chunk, start in enumerate(range(0, num, SAMPLE_BATCH)):
        gen = torch.Generator().manual_seed(derive_seed(stream, seed, chunk))
        x_start = torch.randn((min(SAMPLE_BATCH, num - start), *shape), generator=gen)
        x0, steps = sample(
            unet, schedule, x_start, timesteps, gen, record=record, progress=progress
        )
        finals.append(x0)
        for t, (x_t, x0hat) in steps.items():
            recorded[t][0].append(x_t)
            recorded[t][1].append(x0hat)
    stacked = {t: (torch.cat(xs), torch.cat(hs)) for t, (xs, hs) in recorded.items()}
    return torch.cat(finals), stacked


def generated_targets(
    unet: torch.nn.Module,
    schedule: Schedule,
    num: int,
    grid: Sequence[int],
    inference_steps: int,
    seed: int,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """The ``generated`` target set (see the module docstring)."""
    x0, recorded = generate_images(
        unet, schedule, num, inference_steps, seed, record=grid, progress=progress
    )
    return {
        "x_t": torch.stack([recorded[t][0] for t in grid], dim=1).numpy(),
        "x0hat": torch.stack([recorded[t][1] for t in grid], dim=1).numpy(),
        "x0": x0.numpy(),
        "grid": np.asarray(grid, dtype=np.int64),
        "target_id": np.arange(num, dtype=np.int64),
        "label": np.full(num, -1, dtype=np.int64),
        "source_index": np.full(num, -1, dtype=np.int64),
    }


def pick_validation(labels: np.ndarray, num: int, seed: int) -> np.ndarray:
    """``num`` test indices, one class after another in turn (each class shuffled, seeded)."""
    if num > len(labels):
        raise ValueError(f"sampling.num_validation = {num} exceeds the {len(labels)} test images")
    rng = numpy_rng(VALIDATION_PICK, seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < num:
        for queue in queues:
            if queue and len(picked) < num:
                picked.append(int(queue.pop(0)))
    return np.asarray(picked, dtype=np.int64)


def validation_targets(
    images: np.ndarray,
    labels: np.ndarray,
    num: int,
    grid: Sequence[int],
    schedule: Schedule,
    seed: int,
    first_id: int,
) -> dict[str, np.ndarray]:
    """The ``validation`` target set from the test split (see the module docstring)."""
    index = pick_validation(labels, num, seed)
    x0 = to_model_space(images[index])
    ids = np.arange(first_id, first_id + num, dtype=np.int64)
    steps = torch.as_tensor(list(grid), dtype=torch.long)
    x_t = torch.empty((num, len(grid), *x0.shape[1:]), dtype=torch.float32)
    for i, tid in enumerate(ids):
        gen = torch.Generator().manual_seed(derive_seed(VALIDATION_NOISE, seed, int(tid)))
        noise = torch.randn((len(grid), *x0.shape[1:]), generator=gen)
        clean = x0[i].double().expand(len(grid), *x0.shape[1:])
        x_t[i] = add_noise(clean, noise.double(), steps, schedule.alphas_cumprod).float()
    return {
        "x_t": x_t.numpy(),
        "x0hat": x0.unsqueeze(1).expand(-1, len(grid), -1, -1, -1).numpy().copy(),
        "x0": x0.numpy(),
        "grid": np.asarray(grid, dtype=np.int64),
        "target_id": ids,
        "label": labels[index].astype(np.int64),
        "source_index": index,
    }


def check_targets(arrays: Mapping[str, np.ndarray], where: str = "targets") -> None:
    """Raise ``ValueError`` naming the first key that breaks the target-set format."""
    for key, (dtype, ndim) in FIELDS.items():
        if key not in arrays:
            raise ValueError(f"{where}: missing key {key!r}")
        if arrays[key].dtype != dtype or arrays[key].ndim != ndim:
            raise ValueError(
                f"{where}: {key} is {arrays[key].dtype} with {arrays[key].ndim} dims, "
                f"expected {np.dtype(dtype)} with {ndim}"
            )
    n, g = arrays["x_t"].shape[:2]
    if arrays["x0hat"].shape != arrays["x_t"].shape or arrays["x0"].shape != (
        n,
        *arrays["x_t"].shape[2:],
    ):
        raise ValueError(f"{where}: x_t, x0hat and x0 shapes disagree")
    if len(arrays["grid"]) != g:
        raise ValueError(f"{where}: grid has {len(arrays['grid'])} steps, x_t has {g}")
    if any(len(arrays[k]) != n for k in ("target_id", "label", "source_index")):
        raise ValueError(f"{where}: target_id, label and source_index need {n} entries")
    present = [key for key in TEXT_TO_IMAGE_FIELDS if key in arrays]
    if present and len(present) != len(TEXT_TO_IMAGE_FIELDS):
        raise ValueError(f"{where}: has {present} but not all of {list(TEXT_TO_IMAGE_FIELDS)}")
    for key in present:
        kind, ndim = TEXT_TO_IMAGE_FIELDS[key]
        ok = arrays[key].dtype.kind == kind if isinstance(kind, str) else arrays[key].dtype == kind
        if not ok or arrays[key].ndim != ndim or len(arrays[key]) != n:
            raise ValueError(f"{where}: {key} is {arrays[key].dtype} {arrays[key].shape}")
    for key in ("decoded_x_t", "decoded_x0hat"):
        if present and arrays[key].shape[1] != g:
            raise ValueError(f"{where}: {key} has {arrays[key].shape[1]} steps, x_t has {g}")


def save_targets(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Check the format, then write the target set atomically."""
    check_targets(arrays, str(path))
    keys = [*FIELDS, *(key for key in TEXT_TO_IMAGE_FIELDS if key in arrays)]
    save_npz(path, **{key: arrays[key] for key in keys})


def save_grid_png(
    path: str | os.PathLike, images: torch.Tensor | np.ndarray, ncol: int = 8
) -> None:
    """PNG grid of model-space images, each upscaled to at least ``GRID_TILE_PIXELS`` pixels."""
    pixels = to_uint8(images)
    save_image_grid(path, pixels, ncol=ncol, scale=max(1, GRID_TILE_PIXELS // pixels.shape[-1]))
