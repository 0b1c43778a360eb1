"""Stage training's rule entry points (scripts/training/): train one model, or a group of
subset models of one seed, from the split files, and write each model's folder."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr.core.diffusion import Schedule, resolve_device, save_model, unet_kwargs
from stepattr.core.images import load_split
from stepattr.core.io import save_csv, sha256_file
from stepattr.core.lora import is_lora_spec
from stepattr.latents.autoencoder import load_latents
from stepattr.training.conditioning import caption_conditioning
from stepattr.training.recipe import TrainSettings
from stepattr.training.subsets import load_subset_row, save_masks, subset_masks, subset_table
from stepattr.training.train import train_diffusion


def _model_info(
    model_id: str,
    seed: int,
    steps: int,
    subset_row: int | None,
    subset_size: int | None,
    shared_batches: bool,
    num_train_images: int,
    manifest: str | os.PathLike,
    train: TrainSettings,
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
        "train": asdict(train),
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
    train: TrainSettings,
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
        dropout = train.caption_dropout
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
        images, model_cfg, train, schedule,
        seed=seed, steps=steps, device=device, keep=keep, state_path=state_path,
        progress=progress, conditioning=conditioning,
    )  # fmt: skip
    info = _model_info(
        model_id, seed, steps, subset_row, subset_size, keep is not None,
        subset_size if subset_size is not None else len(images), manifest, train, device,
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
    train: TrainSettings,
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
        images, model_cfg, train, schedule,
        seed=seed, steps=steps, device=device, keep=keep, state_path=state_path,
        progress=progress,
    )  # fmt: skip
    trainer = result.trainer
    for g, (out_dir, model_id, row) in enumerate(
        zip(out_dirs, model_ids, subset_rows, strict=True)
    ):
        info = _model_info(
            model_id, seed, steps, int(row), int(keep[g].sum()), True, int(keep[g].sum()),
            manifest, train, device, result.resumed_from, trainer.use_ema,
        ) | {"batched_group": [str(m) for m in model_ids]}  # fmt: skip
        _save_trained(
            out_dir, trainer.model(g), result.loss_frames[g], model_cfg, schedule,
            images.shape[1:3], info,
        )  # fmt: skip
    Path(state_path).unlink(missing_ok=True)


def run_make_subsets(smk: Any) -> None:
    """Rule make_subsets: subset matrix + table -> {OUT}/subsets/ (stepattr.training.subsets)."""
    p = smk.params
    _, labels, _ = load_split(smk.input.train)
    masks = subset_masks(len(labels), p.scored, p.heldout, p.alpha, p.seed)
    save_masks(smk.output.masks, masks)
    save_csv(smk.output.table, subset_table(masks, p.scored, p.seed))
    print(
        f"{len(masks)} subsets ({p.scored} scored, {p.heldout} held out) "
        f"of {masks[0].sum()} examples"
    )


def run_train(smk: Any) -> None:
    """Rules train and retrain: one DDPM model -> {MODELS}/{model_id}/ (stepattr.training.jobs)."""
    torch.set_num_threads(smk.threads)
    p = smk.params
    train_and_save(
        train_split=smk.input.train,
        manifest=smk.input.manifest,
        masks=smk.input.get("masks"),
        out_dir=Path(smk.output.model).parent,
        state_path=p.state,
        model_cfg=dict(p.model),
        train=TrainSettings.from_config(p.train),
        diffusion_cfg=dict(p.diffusion),
        model_id=p.model_id,
        seed=int(p.seed),
        steps=int(p.steps),
        subset_row=p.subset_row,
        shared_batches=bool(p.get("shared_batches", False)),
        device=resolve_device(p.device),
        latents=smk.input.get("latents"),
        text_states=smk.input.get("text_states"),
    )


def run_train_group(smk: Any) -> None:
    """Rules retrain_group_*: G subset models of one seed trained together -> {MODELS}/subset_*/
    (stepattr.training.jobs.train_group_and_save)."""
    torch.set_num_threads(smk.threads)
    p = smk.params
    train_group_and_save(
        train_split=smk.input.train,
        manifest=smk.input.manifest,
        masks=smk.input.masks,
        out_dirs=[Path(smk.output[0]).parent.parent / model_id for model_id in p.model_ids],
        state_path=p.state,
        model_cfg=dict(p.model),
        train=TrainSettings.from_config(p.train),
        diffusion_cfg=dict(p.diffusion),
        model_ids=list(p.model_ids),
        seed=int(p.seed),
        steps=int(p.steps),
        subset_rows=[int(r) for r in p.subset_rows],
        device=resolve_device(p.device),
    )
