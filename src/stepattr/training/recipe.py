"""DDPM training of the diffusers UNet on a training split or a subset of it.

The recipe (DDPM, Ho et al. 2020): draw a batch, a uniform timestep and a Gaussian noise per
image, minimise the mean squared error between the UNet's noise prediction and the noise.
AdamW with linear learning-rate warmup, gradient-norm clipping, and an exponential moving
average (EMA) of the weights; the saved model is the EMA when ``ema_decay > 0``.

Subset models (LDS ground truth, counterfactual removals) can train on *shared batches*: the
full training set's batch stream, timesteps and noises, with the excluded examples dropped from
each batch. Two such models then differ only through the data they exclude, not through a
different shuffle (common random numbers), which removes most of the retraining noise from
the differences that LDS and the counterfactual check measure.

Reproducibility: every random draw is keyed by (seed, step) or (seed, epoch) through
:mod:`stepattr.core.seeds` (initial weights, data order, timesteps, noises, dropout), so the same
config and seed give bit-identical weights on the CPU, and a job resumed from a saved training
state continues exactly as if it had never stopped. The training state (weights, EMA,
optimizer, step, loss log) is saved every ``checkpoint_every`` steps; no random-generator state
needs saving, because none carries over between steps.

On CUDA the same code runs with bf16 autocast, channels-last tensors, fused AdamW and
(``compile: auto | true``) ``torch.compile``; the EMA and optimizer state stay float32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from stepattr.core.diffusion import Schedule, add_noise, build_unet
from stepattr.core.io import atomic_path
from stepattr.core.seeds import DATA_ORDER, MODEL_INIT, TRAIN_STEP, derive_seed, numpy_rng
from stepattr.core.settings import settings_from
from stepattr.training.conditioning import CaptionConditioning

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["step", "loss", "loss_smooth", "img_per_s"]
SMOOTHING = 0.98  # per-step decay of the smoothed loss column
MAX_LOG_ROWS = 1000
# Train-config keys that change how a job runs but not the weights it produces.
RUNTIME_KEYS = ("threads", "checkpoint_every", "compile")

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section (config/schema.yaml), typed and checked once where a job starts:
    the trainers read fields, never the mapping. Defaults: the schema's."""

    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    caption_dropout: float = 0.1
    checkpoint_every: int = 500
    threads: int = 1
    compile: str | bool = "auto"

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TrainSettings:
        """The settings of a ``train`` section; raises on an unknown key or schedule."""
        settings = settings_from(cls, section, "train")
        if settings.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {LR_SCHEDULES}")
        return settings

    def recipe(self) -> dict[str, Any]:
        """What determines the weights (the runtime keys left out): the resume fingerprint."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_KEYS}


class BatchOrder:
    """Batches of shuffled passes over ``n`` examples; epoch ``e`` is permuted by (seed, e).

    Batch ``s`` holds positions ``s*B .. (s+1)*B - 1`` of the endless concatenation of epoch
    permutations, so any step's batch is known without replaying the ones before it.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1:
            raise ValueError("cannot train on an empty dataset")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = numpy_rng(DATA_ORDER, self.seed, epoch).permutation(self.n)
        return self._perm

    def indices(self, step: int) -> np.ndarray:
        """Example indices of batch ``step``."""
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = np.divmod(positions, self.n)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self._permutation(int(epoch))[offsets[sel]]
        return out


def ema_decay_at(decay: float, step: int) -> float:
    """EMA decay used after optimizer step ``step`` (0-based): ``min(decay, (1+s)/(10+s))``.

    The warmup keeps the average from being dominated by the random initial weights in short
    runs (diffusers' EMAModel does the same).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def learning_rate_at(train: TrainSettings, step: int, total_steps: int | None) -> float:
    """Linear warmup from lr / warmup_steps to lr over ``warmup_steps``; then constant
    (``lr_schedule: constant``) or a half cosine down to 0 at ``total_steps`` (``cosine``).

    Decay to 0 makes the last batches move the weights little, so the final model depends
    less on which examples happened to come last: less seed noise in what retraining measures.
    """
    lr, warmup = train.lr, train.warmup_steps
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if train.lr_schedule == "constant":
        return lr
    if total_steps is None:
        raise ValueError("train.lr_schedule: cosine needs the run's total steps")
    progress = (step - warmup) / max(1, total_steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def use_compile(setting: str | bool, device: torch.device) -> bool:
    """``auto`` compiles on CUDA only (on CPU compilation costs more than it saves here)."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


class DiffusionTrainer:
    """One model's optimisation state and its training step (no I/O)."""

    def __init__(
        self,
        images: torch.Tensor,
        model_cfg: Mapping[str, Any],
        train: TrainSettings,
        schedule: Schedule,
        seed: int,
        device: torch.device,
        keep: torch.Tensor | None = None,
        conditioning: CaptionConditioning | None = None,
        total_steps: int | None = None,
    ) -> None:
        """``keep``: bool mask over ``images``; batches are drawn from all images and the
        examples outside the mask dropped from them (shared batches). ``conditioning``: the
        text-to-image family's captions; ``images`` are then its scaled latents.
        ``total_steps``: the run's length, which a decaying learning rate needs."""
        self.train, self.seed, self.device = train, int(seed), device
        self.total_steps = total_steps
        self.cuda = device.type == "cuda"
        self.num_timesteps = schedule.num_train_timesteps
        _, channels, size, _ = images.shape
        torch.manual_seed(derive_seed(MODEL_INIT, self.seed))
        self.conditioning = conditioning
        cross = conditioning.cross_attention_dim if conditioning is not None else None
        self.unet = build_unet(model_cfg, size, channels, cross).to(device)
        if self.cuda:
            self.unet = self.unet.to(memory_format=torch.channels_last)
        self.unet.train()
        use_ema = train.ema_decay > 0
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval() if use_ema else None
        trainable = {n for n, p in self.unet.named_parameters() if p.requires_grad}
        self.params = [p for n, p in self.unet.named_parameters() if n in trainable]
        # the EMA follows what trains (a LoRA model's frozen base is the same in both)
        ema_named = self.ema.named_parameters() if self.ema is not None else ()
        self.ema_params = [p for n, p in ema_named if n in trainable]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=train.lr,
            weight_decay=train.weight_decay,
            fused=True if self.cuda else None,
        )
        compiled = use_compile(train.compile, device)
        self.forward = torch.compile(self.unet) if compiled else self.unet
        self.data = images.to(device)
        self.order = BatchOrder(len(images), train.batch_size, self.seed)
        self.keep = keep.to(device) if keep is not None else None
        kept = 1.0 if keep is None else float(keep.float().mean())
        self.examples_per_step = train.batch_size * kept
        self.alphas_cumprod = schedule.alphas_cumprod.to(device, torch.float32)
        self.step = 0

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(self.train, step, self.total_steps)

    def train_step(self) -> torch.Tensor:
        """One optimizer step; returns the batch loss (detached, on the device, unsynchronised)."""
        step = self.step
        torch.manual_seed(derive_seed(TRAIN_STEP, self.seed, step))  # timesteps, noise, dropout
        batch = self.order.indices(step)
        idx = torch.from_numpy(batch).to(self.device)
        t = torch.randint(0, self.num_timesteps, (len(idx),), device=self.device)
        noise = torch.randn((len(idx), *self.data.shape[1:]), device=self.device)
        cond = {}
        if self.conditioning is not None:  # drawn for the whole batch: shared with subsets
            cond["encoder_hidden_states"] = self.conditioning.batch(batch, step).to(self.device)
        if self.keep is not None:
            kept = self.keep[idx]
            idx, t, noise = idx[kept], t[kept], noise[kept]
            cond = {k: v[kept] for k, v in cond.items()}
            if len(idx) == 0:  # every example of this batch excluded: nothing to learn from
                self.step += 1
                return torch.zeros((), device=self.device)
        x0 = self.data[idx]
        x_t = add_noise(x0, noise, t, self.alphas_cumprod)
        if self.cuda:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            pred = self.forward(x_t, t, **cond).sample
        loss = F.mse_loss(pred.float(), noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.train.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            decay = ema_decay_at(self.train.ema_decay, step)
            torch._foreach_lerp_(self.ema_params, [p.detach() for p in self.params], 1 - decay)
        self.step += 1
        return loss.detach()

    def final_model(self) -> torch.nn.Module:
        """The weights to save: the EMA when enabled, else the trained weights."""
        return self.ema if self.ema is not None else self.unet

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.unet.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.unet.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


class LossLog:
    """Rows of (step, mean loss since last row, smoothed loss, images per second)."""

    def __init__(self, rows: torch.Tensor | None = None) -> None:
        self.rows: list[list[float]] = rows.tolist() if rows is not None else []
        self.smooth = self.rows[-1][2] if self.rows else None

    def add(self, step: int, losses: Sequence[float], images_per_s: float) -> None:
        for value in losses:
            self.smooth = (
                value if self.smooth is None else SMOOTHING * self.smooth + (1 - SMOOTHING) * value
            )
        self.rows.append([step, float(np.mean(losses)), self.smooth, images_per_s])

    def tensor(self) -> torch.Tensor:
        return torch.tensor(self.rows, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=LOSS_COLUMNS)
        return frame.astype({"step": "int64"})


def save_training_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """torch.save of tensors and plain containers only (loadable with ``weights_only=True``)."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_training_state(path: str | os.PathLike, fingerprint: str) -> dict[str, Any] | None:
    """The saved state at ``path`` if it belongs to this recipe, else None (stale: start over).

    An unreadable file raises ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors of a damaged file
        raise ValueError(
            f"{path}: unreadable training state ({err}); delete it to start over"
        ) from err
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log.warning("%s: saved for another recipe or dataset; starting from step 0", path)
        return None
    return state


def recipe_fingerprint(
    model_cfg: Mapping[str, Any],
    train: TrainSettings,
    schedule: Schedule,
    seed: int,
    steps: int,
    data_digest: str,
) -> str:
    """Hash of everything that determines the weights: a saved state resumes only on a match."""
    recipe = {
        "model": dict(model_cfg),
        "train": train.recipe(),
        "schedule": [schedule.num_train_timesteps, schedule.beta_start, schedule.beta_end]
        + ([schedule.beta_schedule] if schedule.beta_schedule != "linear" else []),
        "seed": int(seed),
        "steps": int(steps),
        "data": data_digest,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@dataclass
class TrainResult:
    trainer: Any  # DiffusionTrainer, or BatchedDiffusionTrainer for a group of subset models
    loss_frames: list[pd.DataFrame]  # one per model
    resumed_from: int

    @property
    def losses(self) -> pd.DataFrame:
        """The loss log of a one-model run."""
        return self.loss_frames[0]
