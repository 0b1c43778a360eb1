"""The training loop: one model, or a group of shared-batch subset models, trained on
images already in memory, resuming from a saved training state (the recipe:
:mod:`stepattr.training.recipe`)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from stepattr.core.diffusion import Schedule
from stepattr.core.images import to_model_space
from stepattr.training.conditioning import CaptionConditioning
from stepattr.training.recipe import (
    MAX_LOG_ROWS,
    DiffusionTrainer,
    LossLog,
    TrainResult,
    TrainSettings,
    load_training_state,
    recipe_fingerprint,
    save_training_state,
)

log = logging.getLogger(__name__)


def train_diffusion(
    images: np.ndarray,
    model_cfg: Mapping[str, Any],
    train: TrainSettings,
    schedule: Schedule,
    *,
    seed: int,
    steps: int,
    device: torch.device,
    keep: np.ndarray | None = None,
    state_path: str | os.PathLike | None = None,
    progress: bool = False,
    conditioning: CaptionConditioning | None = None,
) -> TrainResult:
    """Train a UNet on uint8 ``images`` (N, C, H, W) for ``steps`` steps, resuming if possible.

    With ``conditioning`` (the text-to-image family) ``images`` are float latents, used as
    they are, and the UNet is a ``UNet2DConditionModel`` on the captions' text states.

    ``keep``: bool mask (N,) over ``images`` for shared-batch training on a subset (see module
    doc), or a (G, N) matrix: G subset models of this seed trained together
    (:class:`stepattr.training.batched.BatchedDiffusionTrainer`).
    With ``state_path`` the training state is saved there every ``checkpoint_every`` steps and
    a matching saved state is resumed from; the caller deletes it once the model is written.
    """
    data = torch.from_numpy(images) if conditioning is not None else to_model_space(images)
    keep_mask = None if keep is None else torch.from_numpy(np.asarray(keep, dtype=bool))
    if keep_mask is not None and keep_mask.dim() == 2:
        from stepattr.training.batched import BatchedDiffusionTrainer

        if conditioning is not None:
            raise ValueError("subsets.group_size > 1 does not train text-conditioned models yet")
        trainer = BatchedDiffusionTrainer(
            data, model_cfg, train, schedule, seed, device, keep_mask, total_steps=steps
        )
        num_models = keep_mask.shape[0]
    else:
        trainer = DiffusionTrainer(
            data, model_cfg, train, schedule, seed, device, keep_mask, conditioning, steps
        )
        num_models = 1
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    if conditioning is not None:
        digest.update(conditioning.states.numpy().tobytes() + conditioning.table.tobytes())
        digest.update(f"dropout:{conditioning.dropout},seed:{conditioning.seed}".encode())
    if keep is not None:
        digest.update(b"keep:" + np.packbits(np.asarray(keep, dtype=bool)).tobytes())
    fingerprint = recipe_fingerprint(model_cfg, train, schedule, seed, steps, digest.hexdigest())
    logs = [LossLog() for _ in range(num_models)]
    state = load_training_state(state_path, fingerprint) if state_path else None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        saved = state["losses"]
        logs = [LossLog(saved[g] if saved.dim() == 3 else saved) for g in range(num_models)]
        log.info("resumed from %s at step %d", state_path, trainer.step)
    resumed_from = trainer.step
    log_every = max(1, steps // MAX_LOG_ROWS)
    checkpoint_every = train.checkpoint_every
    batch = trainer.examples_per_step
    bar = tqdm(
        total=steps, initial=trainer.step, desc="training", disable=not progress, mininterval=10
    )
    pending: list[torch.Tensor] = []
    clock = time.perf_counter()
    while trainer.step < steps:
        pending.append(trainer.train_step().reshape(-1))
        at_checkpoint = state_path is not None and trainer.step % checkpoint_every == 0
        if trainer.step % log_every == 0 or at_checkpoint or trainer.step == steps:
            values = torch.stack(pending).float().cpu()  # (n, G); synchronises the device
            now = time.perf_counter()
            rate = len(values) * batch * num_models / max(now - clock, 1e-9)
            for g, loss_log in enumerate(logs):
                loss_log.add(trainer.step, values[:, g].tolist(), rate)
            bar.update(len(values))
            bar.set_postfix(loss=f"{logs[0].smooth:.4f}", img_s=f"{rate:.0f}", refresh=False)
            pending, clock = [], now
        if at_checkpoint and trainer.step < steps:
            saved = torch.stack([loss_log.tensor() for loss_log in logs])
            payload = {"fingerprint": fingerprint, "trainer": trainer.state_dict()}
            save_training_state(
                state_path, payload | {"losses": saved if num_models > 1 else saved[0]}
            )
            clock = time.perf_counter()
    bar.close()
    return TrainResult(trainer, [loss_log.frame() for loss_log in logs], resumed_from)
