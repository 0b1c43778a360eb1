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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stepattr.core.diffusion import Schedule, add_noise, build_unet, save_model, unet_kwargs
from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_path, save_csv, sha256_file
from stepattr.core.lora import is_lora_spec
from stepattr.core.seeds import DATA_ORDER, MODEL_INIT, TRAIN_STEP, derive_seed, numpy_rng
from stepattr.latents.autoencoder import load_latents
from stepattr.training.conditioning import CaptionConditioning, caption_conditioning
from stepattr.training.subsets import load_subset_row

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["step", "loss", "loss_smooth", "img_per_s"]
SMOOTHING = 0.98  # per-step decay of the smoothed loss column
MAX_LOG_ROWS = 1000
# Train-config keys that change how a job runs but not the weights it produces.
RUNTIME_KEYS = ("threads", "checkpoint_every", "compile")


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


def learning_rate_at(train_cfg: Mapping[str, Any], step: int, total_steps: int | None) -> float:
    """Linear warmup from lr / warmup_steps to lr over ``warmup_steps``; then constant
    (``lr_schedule: constant``) or a half cosine down to 0 at ``total_steps`` (``cosine``).

    Decay to 0 makes the last batches move the weights little, so the final model depends
    less on which examples happened to come last: less seed noise in what retraining measures.
    """
    lr, warmup = float(train_cfg["lr"]), int(train_cfg["warmup_steps"])
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if train_cfg.get("lr_schedule", "constant") == "constant":
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
        train_cfg: Mapping[str, Any],
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
        self.cfg, self.seed, self.device = dict(train_cfg), int(seed), device
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
        decay = float(self.cfg["ema_decay"])
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval() if decay > 0 else None
        trainable = {n for n, p in self.unet.named_parameters() if p.requires_grad}
        self.params = [p for n, p in self.unet.named_parameters() if n in trainable]
        # the EMA follows what trains (a LoRA model's frozen base is the same in both)
        ema_named = self.ema.named_parameters() if self.ema is not None else ()
        self.ema_params = [p for n, p in ema_named if n in trainable]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=float(self.cfg["lr"]),
            weight_decay=float(self.cfg["weight_decay"]),
            fused=True if self.cuda else None,
        )
        compiled = use_compile(self.cfg.get("compile", "auto"), device)
        self.forward = torch.compile(self.unet) if compiled else self.unet
        self.data = images.to(device)
        self.order = BatchOrder(len(images), int(self.cfg["batch_size"]), self.seed)
        self.keep = keep.to(device) if keep is not None else None
        kept = 1.0 if keep is None else float(keep.float().mean())
        self.examples_per_step = int(self.cfg["batch_size"]) * kept
        self.alphas_cumprod = schedule.alphas_cumprod.to(device, torch.float32)
        self.step = 0

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(self.cfg, step, self.total_steps)

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
        if self.cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(self.params, float(self.cfg["grad_clip"]))
        self.optimizer.step()
        if self.ema is not None:
            decay = ema_decay_at(float(self.cfg["ema_decay"]), step)
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
    train_cfg: Mapping[str, Any],
    schedule: Schedule,
    seed: int,
    steps: int,
    data_digest: str,
) -> str:
    """Hash of everything that determines the weights: a saved state resumes only on a match."""
    recipe = {
        "model": dict(model_cfg),
        "train": {k: v for k, v in train_cfg.items() if k not in RUNTIME_KEYS},
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


def train_diffusion(
    images: np.ndarray,
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
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
            data, model_cfg, train_cfg, schedule, seed, device, keep_mask, total_steps=steps
        )
        num_models = keep_mask.shape[0]
    else:
        trainer = DiffusionTrainer(
            data, model_cfg, train_cfg, schedule, seed, device, keep_mask, conditioning, steps
        )
        num_models = 1
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    if conditioning is not None:
        digest.update(conditioning.states.numpy().tobytes() + conditioning.table.tobytes())
        digest.update(f"dropout:{conditioning.dropout},seed:{conditioning.seed}".encode())
    if keep is not None:
        digest.update(b"keep:" + np.packbits(np.asarray(keep, dtype=bool)).tobytes())
    fingerprint = recipe_fingerprint(
        model_cfg, train_cfg, schedule, seed, steps, digest.hexdigest()
    )
    logs = [LossLog() for _ in range(num_models)]
    state = load_training_state(state_path, fingerprint) if state_path else None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        saved = state["losses"]
        logs = [LossLog(saved[g] if saved.dim() == 3 else saved) for g in range(num_models)]
        log.info("resumed from %s at step %d", state_path, trainer.step)
    resumed_from = trainer.step
    log_every = max(1, steps // MAX_LOG_ROWS)
    checkpoint_every = int(train_cfg["checkpoint_every"])
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


def _model_info(
    model_id: str,
    seed: int,
    steps: int,
    subset_row: int | None,
    subset_size: int | None,
    shared_batches: bool,
    num_train_images: int,
    manifest: str | os.PathLike,
    train_cfg: Mapping[str, Any],
    device: torch.device,
    resumed_from: int,
    ema: bool,
) -> dict[str, Any]:
    """The provenance block of a trained model's config.json."""
    return {
        "model_id": model_id,
        "seed": int(seed),
        "steps": int(steps),
        "subset_row": subset_row,
        "subset_size": subset_size,
        "shared_batches": shared_batches,
        "num_train_images": int(num_train_images),
        "dataset_manifest_sha256": sha256_file(manifest),
        "train": dict(train_cfg),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "resumed_from_step": resumed_from,
        "ema": ema,
    }


def _save_trained(
    out_dir: str | os.PathLike,
    model: torch.nn.Module,
    losses: pd.DataFrame,
    model_cfg: Mapping[str, Any],
    schedule: Schedule,
    image_shape: Sequence[int],
    info: Mapping[str, Any],
    cross_attention_dim: int | None = None,
) -> None:
    """model.safetensors, config.json and loss.csv of one trained workflow model."""
    channels, size = int(image_shape[0]), int(image_shape[1])
    info = dict(info) | {"final_loss_smooth": float(losses["loss_smooth"].iloc[-1])}
    if is_lora_spec(model_cfg):
        kwargs = dict(model_cfg)
    else:
        kwargs = unet_kwargs(model_cfg, size, channels, cross_attention_dim)
    save_model(out_dir, model, kwargs, schedule, info)
    save_csv(Path(out_dir) / "loss.csv", losses)


def train_and_save(
    *,
    train_split: str | os.PathLike,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    diffusion_cfg: Mapping[str, Any],
    model_id: str,
    seed: int,
    steps: int,
    device: torch.device,
    masks: str | os.PathLike | None = None,
    subset_row: int | None = None,
    shared_batches: bool = False,
    progress: bool = True,
    latents: str | os.PathLike | None = None,
    text_states: str | os.PathLike | None = None,
) -> None:
    """Train one workflow model and write model.safetensors, config.json and loss.csv.

    ``masks`` + ``subset_row``: train only on the examples where row ``subset_row`` of the
    boolean subset matrix is true; ``shared_batches`` draws the batches from the full set and
    drops the others (see module doc) instead of shuffling the subset on its own.
    ``latents`` + ``text_states`` (the text-to-image family): train a text-conditioned UNet on
    the cached latents of the split under its captions (``train.caption_dropout``).
    The training state file is deleted once the model is written.
    """
    images, _, _ = load_split(train_split)
    conditioning = None
    if latents is not None:
        images = load_latents(latents)[0]
        dropout = float(train_cfg.get("caption_dropout", 0.0))
        conditioning = caption_conditioning(train_split, text_states, dropout, seed)
    subset_size, keep = None, None
    if subset_row is not None:
        mask = load_subset_row(masks, subset_row, len(images))
        subset_size = int(mask.sum())
        if shared_batches:
            keep = mask
        elif conditioning is not None:
            raise ValueError("text-conditioned subset models need subsets.shared_batches: true")
        else:
            images = images[mask]
    schedule = Schedule.from_config(diffusion_cfg)
    result = train_diffusion(
        images, model_cfg, train_cfg, schedule,
        seed=seed, steps=steps, device=device, keep=keep, state_path=state_path,
        progress=progress, conditioning=conditioning,
    )  # fmt: skip
    info = _model_info(
        model_id, seed, steps, subset_row, subset_size, keep is not None,
        subset_size if subset_size is not None else len(images), manifest, train_cfg, device,
        result.resumed_from, result.trainer.ema is not None,
    )  # fmt: skip
    cross = conditioning.cross_attention_dim if conditioning is not None else None
    _save_trained(
        out_dir, result.trainer.final_model(), result.losses, model_cfg, schedule,
        images.shape[1:3], info, cross,
    )  # fmt: skip
    Path(state_path).unlink(missing_ok=True)


def train_group_and_save(
    *,
    train_split: str | os.PathLike,
    manifest: str | os.PathLike,
    out_dirs: Sequence[str | os.PathLike],
    state_path: str | os.PathLike,
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    diffusion_cfg: Mapping[str, Any],
    model_ids: Sequence[str],
    seed: int,
    steps: int,
    device: torch.device,
    masks: str | os.PathLike,
    subset_rows: Sequence[int],
    progress: bool = True,
) -> None:
    """Train the shared-batch subset models of ``subset_rows`` (one seed) together, and write
    each one's files as :func:`train_and_save` would (``batched_group`` records the group)."""
    if not len(out_dirs) == len(model_ids) == len(subset_rows) > 0:
        raise ValueError(
            f"need one output directory and model id per subset row, got {len(out_dirs)}, "
            f"{len(model_ids)} and {len(subset_rows)}"
        )
    images, _, _ = load_split(train_split)
    keep = np.stack([load_subset_row(masks, int(row), len(images)) for row in subset_rows])
    schedule = Schedule.from_config(diffusion_cfg)
    result = train_diffusion(
        images, model_cfg, train_cfg, schedule,
        seed=seed, steps=steps, device=device, keep=keep, state_path=state_path,
        progress=progress,
    )  # fmt: skip
    trainer = result.trainer
    for g, (out_dir, model_id, row) in enumerate(
        zip(out_dirs, model_ids, subset_rows, strict=True)
    ):
        info = _model_info(
            model_id, seed, steps, int(row), int(keep[g].sum()), True, int(keep[g].sum()),
            manifest, train_cfg, device, result.resumed_from, trainer.use_ema,
        ) | {"batched_group": [str(m) for m in model_ids]}  # fmt: skip
        _save_trained(
            out_dir, trainer.model(g), result.loss_frames[g], model_cfg, schedule,
            images.shape[1:3], info,
        )  # fmt: skip
    Path(state_path).unlink(missing_ok=True)
