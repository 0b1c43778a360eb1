"""Ground truth for the LDS: each subset model's outputs on every target.

Two quantities per (model, target), both with common random numbers (the same draws for
every model, seeded per global target id, so differences between models are not noise):

- ``f`` (m, G): the journey-TRAK output function at every grid step,
  ``f_t = sum_r mean_pixels (eps(sqrt(a_t) x0hat_t + sqrt(1-a_t) e_r, t) - e_r)^2`` with the
  R noises of :func:`stepattr.core.output_functions.target_draws`. With the featurizer's seed
  and R it is exactly the function whose gradient TRAK projects; a larger R
  (``lds.target_resamples``) keeps those R noises as its first ones and adds more (a less
  noisy ground truth).
- ``f_fresh`` (m, G): the same function under R *fresh* noises per target and step (seeded
  from ``lds.seed`` through the stream tag ``FRESH_NOISE``), as journey-TRAK draws its ground
  truth. ``f`` shares its noises with the features, so it rewards a method for fitting those
  particular draws; ``f_fresh`` does not.
- ``dtrak`` (m,): D-TRAK's ground truth, the diffusion loss of the final image x0 averaged
  over D (timestep, noise) draws, timesteps uniform on [0, T)
  (:func:`stepattr.core.output_functions.train_draws`
  seeded per target id, from ``lds.seed`` through the stream tag ``DTRAK_DRAWS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch

from stepattr.core.diffusion import eps_model, load_model
from stepattr.core.output_functions import diffusion_losses, step_losses
from stepattr.core.seeds import derive_seed
from stepattr.targets.sets import TargetSets

SUBSET_MODEL = re.compile(r"subset_(\d+)_s(\d+)")
# Stream tag of the D-TRAK draws (apart from stepattr.core.seeds' tags), so that they never repeat
# the featurizer's training-example draws when lds.seed equals attribution.seed.
DTRAK_DRAWS = 100
FRESH_NOISE = 101  # stream tag of f_fresh's noises, apart from the featurizer's (attribution.seed)
GROUND_TRUTHS = ("f", "f_fresh")  # the per-step ground truths of a subset-output file


def subset_model_outputs(
    model_dir: str | os.PathLike,
    targets: TargetSets,
    resamples: int,
    seed: int,
    dtrak_draws: int,
    lds_seed: int,
    batch_size: int,
    device: torch.device,
    states: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """``f`` and ``f_fresh`` (m, G) and ``dtrak`` (m,) of one trained model on every target
    (module docstring), under each target's prompt ``states`` (m, L, D) for the text-to-image
    family. ``seed`` is the featurizer's (attribution.seed), ``lds_seed`` the LDS's own."""
    unet, schedule, _ = load_model(model_dir, device)
    eps, ac = eps_model(unet), schedule.alphas_cumprod
    x0hat = torch.from_numpy(targets.x0hat).to(device)
    x0 = torch.from_numpy(targets.x0).to(device)
    states = None if states is None else states.to(device)
    ids, grid = targets.target_id, targets.grid
    f = step_losses(eps, x0hat, ids, grid, resamples, seed, ac, batch_size, states)
    fresh_stream = derive_seed(FRESH_NOISE, lds_seed)
    f_fresh = step_losses(eps, x0hat, ids, grid, resamples, fresh_stream, ac, batch_size, states)
    dtrak_stream = derive_seed(DTRAK_DRAWS, lds_seed)
    dtrak = diffusion_losses(eps, x0, ids, dtrak_draws, dtrak_stream, ac, batch_size, states)
    return {
        "f": f, "f_fresh": f_fresh, "dtrak": dtrak,
        "target_id": targets.target_id, "grid": targets.grid,
    }  # fmt: skip


def subset_row_seed(model_id: str) -> tuple[int, int]:
    """The subset-mask row and seed index of a model id ``subset_{row}_s{seed}``."""
    match = SUBSET_MODEL.fullmatch(model_id)
    if not match:
        raise ValueError(f"{model_id!r} is not a subset model id (subset_<row>_s<seed>)")
    return int(match.group(1)), int(match.group(2))


def load_subset_outputs(
    paths: Sequence[str | os.PathLike],
    model_ids: Sequence[str],
    target_ids: np.ndarray | None = None,
    ground_truth: str = "f",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read subset outputs and average the models of each subset (its seeds): the ground
    truth of a subset with s seeds is their mean.

    Returns ``rows`` (M,) mask rows in ascending order, ``f`` (m, G, M) and ``dtrak`` (m, M):
    the subset axis last, as :func:`stepattr.lds.metric.lds_per_target` expects. ``f`` is
    the per-step ground truth named by ``ground_truth`` (one of :data:`GROUND_TRUTHS`).
    """
    rows, f, dtrak = load_subset_outputs_by_seed(paths, model_ids, target_ids, ground_truth)
    return rows, f.mean(axis=-1), dtrak.mean(axis=-1)


def load_subset_outputs_by_seed(
    paths: Sequence[str | os.PathLike],
    model_ids: Sequence[str],
    target_ids: np.ndarray | None = None,
    ground_truth: str = "f",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read subset outputs, one slice per training seed: ``rows`` (M,) mask rows in ascending
    order, ``f`` (m, G, M, s) (the per-step ground truth ``ground_truth``) and ``dtrak``
    (m, M, s), seeds in ascending order.

    With ``target_ids``, every file must have been computed for exactly those targets, in
    that order. Every subset must have the same seeds (the retraining ceiling compares them).
    """
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"ground truth {ground_truth!r} is not one of {GROUND_TRUTHS}")
    if len(paths) != len(model_ids) or not paths:
        raise ValueError(
            f"need one output file per subset model, got {len(paths)} for {len(model_ids)}"
        )
    grouped: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    shape = None
    for path, model_id in zip(paths, model_ids, strict=True):
        with np.load(path, allow_pickle=False) as data:
            if {"f", "dtrak"} - set(data.files):
                raise ValueError(f"{path}: not a subset-output file (needs arrays f and dtrak)")
            if ground_truth not in data.files:
                raise ValueError(
                    f"{path}: has no {ground_truth} (written before it existed); compute it "
                    "again: snakemake --forcerun eval_subset_outputs"
                )
            f, dtrak = data[ground_truth], data["dtrak"]
            ids = data["target_id"] if "target_id" in data.files else None
        if target_ids is not None and (ids is None or not np.array_equal(ids, target_ids)):
            raise ValueError(f"{path}: computed for other targets than the current target sets")
        if shape is None:
            shape = f.shape
        if f.shape != shape or dtrak.shape != shape[:1]:
            raise ValueError(f"{path}: f {f.shape} / dtrak {dtrak.shape} differ from {shape}")
        row, seed = subset_row_seed(model_id)
        grouped.setdefault(row, {})[seed] = (f, dtrak)
    rows = np.array(sorted(grouped), dtype=np.int64)
    seeds = sorted(grouped[int(rows[0])])
    for row in rows:
        if sorted(grouped[int(row)]) != seeds:
            raise ValueError(
                f"subset {row} has models of seeds {sorted(grouped[int(row)])}, subset "
                f"{rows[0]} of seeds {seeds}: every subset needs the same seeds"
            )
    f_all = np.stack([np.stack([grouped[r][s][0] for s in seeds], -1) for r in rows], axis=-2)
    d_all = np.stack([np.stack([grouped[r][s][1] for s in seeds], -1) for r in rows], axis=-2)
    return rows, f_all, d_all
