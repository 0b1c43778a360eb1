"""The frozen autoencoder of the text-to-image family: trained here, or a pretrained one loaded.

A diffusers ``AutoencoderKL``, saved with ``save_pretrained`` (config.json + safetensors), so
that a ``StableDiffusionPipeline`` folder can hold it as its ``vae``. Where no pretrained
autoencoder is configured (``autoencoder.pretrained: null``), the workflow trains a small one on
the dataset's training split: pixel MSE plus a small KL term (``kl_weight``), Adam, seeded
batches; its reconstruction error on the test split goes to ``metrics.json``. The latent
scaling factor (diffusion runs on ``scaling_factor * mean latent``) is 1 / std of the training
latents for a trained autoencoder (Rombach et al.'s recipe) and the pretrained config's own
value otherwise (0.18215 for Stable Diffusion's).
"""

from __future__ import annotations

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
from tqdm.auto import tqdm

from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_dir, save_csv, save_json, save_npz
from stepattr.core.seeds import numpy_rng
from stepattr.core.settings import settings_from

log = logging.getLogger(__name__)

AUTOENCODER_DATA = 11  # seed stream of the autoencoder's batch order (after stepattr.core.seeds)


@dataclass(frozen=True)
class AutoencoderSettings:
    """The ``autoencoder`` section (config/schema.yaml), typed once where a job starts."""

    block_out_channels: tuple[int, ...]
    latent_channels: int
    layers_per_block: int
    norm_num_groups: int
    epochs: int
    batch_size: int
    lr: float
    kl_weight: float
    seed: int
    pretrained: str | None = None
    threads: int = 1

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> AutoencoderSettings:
        return settings_from(cls, section, "autoencoder")


def build_autoencoder(cfg: AutoencoderSettings, channels: int, image_size: int) -> Any:
    """A fresh ``AutoencoderKL`` from the ``autoencoder`` settings, seeded."""
    from diffusers import AutoencoderKL

    widths = cfg.block_out_channels
    if any(c % cfg.norm_num_groups for c in widths):
        raise ValueError(
            f"autoencoder.block_out_channels {list(widths)} must be divisible by "
            f"autoencoder.norm_num_groups = {cfg.norm_num_groups}"
        )
    torch.manual_seed(cfg.seed)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=image_size,
    )


def autoencoder_source(files: Sequence[str], hub_id: str | None) -> str | Path:
    """Where a rule's autoencoder comes from: the folder of its input files (trained here or
    a local pretrained folder), else the configured hub id (no input files)."""
    if files:
        return Path(files[0]).parent
    if hub_id is None:
        raise ValueError("autoencoder.pretrained: neither a folder nor a hub id was given")
    return hub_id


def load_autoencoder(source: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """A saved ``AutoencoderKL`` (a local folder, or a hub id where the hub is reachable), in
    eval mode with gradients off; safetensors weights only."""
    from diffusers import AutoencoderKL

    local = Path(source).is_dir()
    if local and not (Path(source) / "config.json").is_file():
        raise ValueError(f"autoencoder.pretrained = {str(source)!r}: no config.json in the folder")
    try:
        vae = AutoencoderKL.from_pretrained(
            str(source), use_safetensors=True, local_files_only=local
        )
    except (OSError, ValueError) as err:
        raise ValueError(f"autoencoder.pretrained = {str(source)!r}: cannot load ({err})") from err
    vae.requires_grad_(False)
    return vae.to(device).eval()


def _over_batches(vae: Any, images: np.ndarray, batch_size: int, fn: Any) -> np.ndarray:
    """``fn`` of uint8 images (N, C, H, W) in model space, batch by batch, without gradients."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_model_space(images[start : start + batch_size]).to(vae.device)
            out.append(fn(x).float().cpu())
    return torch.cat(out).numpy()


def reconstruct(vae: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Decoded posterior means of uint8 images (N, C, H, W), as float in [-1, 1]."""
    decode = lambda x: vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)  # noqa: E731
    return _over_batches(vae, images, batch_size, decode)


def encode_means(vae: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Posterior mean latents (N, latent_channels, h, w) of uint8 images, float32."""
    return _over_batches(vae, images, batch_size, lambda x: vae.encode(x).latent_dist.mean)


def train_autoencoder(
    train_path: str | os.PathLike,
    test_path: str | os.PathLike,
    cfg: AutoencoderSettings,
    out_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train a small AutoencoderKL on the training split; save it and its metrics.

    Writes ``out_dir`` (``config.json``, ``diffusion_pytorch_model.safetensors``;
    :func:`stepattr.core.io.atomic_dir`), ``loss.csv`` and ``metrics.json`` beside it.
    Returns the metrics.
    """
    images, _, _ = load_split(train_path)
    test_images, _, _ = load_split(test_path)
    vae = build_autoencoder(cfg, images.shape[1], images.shape[-1]).to(device).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    batch, epochs, kl_weight = cfg.batch_size, cfg.epochs, cfg.kl_weight
    steps_per_epoch = math.ceil(len(images) / batch)
    generator = torch.Generator().manual_seed(cfg.seed)
    rows = []
    progress = tqdm(total=epochs * steps_per_epoch, desc="autoencoder", mininterval=5)
    for epoch in range(epochs):
        order = numpy_rng(AUTOENCODER_DATA, cfg.seed, epoch).permutation(len(images))
        for start in range(0, len(images), batch):
            x = to_model_space(images[order[start : start + batch]]).to(device)
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(
                posterior.mean.shape, generator=generator
            ).to(device)
            recon = vae.decode(z).sample
            mse = torch.nn.functional.mse_loss(recon, x)
            kl = posterior.kl().mean() / x[0].numel()
            loss = mse + kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            rows.append({"epoch": epoch, "mse": mse.item(), "kl_per_dim": kl.item()})
            progress.update()
    progress.close()
    vae.eval()
    test_mse = float(
        np.mean((reconstruct(vae, test_images, 256) - to_model_space(test_images).numpy()) ** 2)
    )
    metrics = {
        "test_mse": test_mse,  # per pixel, images in [-1, 1]
        "test_psnr_db": float(10 * np.log10(4.0 / test_mse)),  # peak-to-peak range 2
        "train_images": int(len(images)),
        "test_images": int(len(test_images)),
        "epochs": epochs,
        "latent_shape": list(encode_means(vae, test_images[:1], 1).shape[1:]),
        "config": asdict(cfg) | {"block_out_channels": list(cfg.block_out_channels)},
    }
    log.info("test reconstruction MSE %.5f (PSNR %.2f dB)", test_mse, metrics["test_psnr_db"])
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
    save_csv(out_dir.parent / "loss.csv", pd.DataFrame(rows))
    save_json(out_dir.parent / "metrics.json", metrics)
    return metrics


def write_latents(
    vae: Any,
    train_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_path: str | os.PathLike,
    scaling: str,
    batch_size: int,
) -> float:
    """Cache every image's scaled posterior-mean latent; return the scaling factor.

    ``scaling``: ``data`` (1 / std of the training latents: the trained autoencoder) or
    ``config`` (the autoencoder config's ``scaling_factor``: a pretrained one). The file
    (:func:`load_latents`) holds ``train``, ``test`` (float32, scaled) and ``scaling_factor``.
    """
    train_images, _, _ = load_split(train_path)
    test_images, _, _ = load_split(test_path)
    train, test = (encode_means(vae, x, batch_size) for x in (train_images, test_images))
    if scaling == "data":
        factor = float(1.0 / train.std())
    elif scaling == "config":
        factor = float(vae.config.scaling_factor)
    else:
        raise ValueError(f"latent scaling must be 'data' or 'config', not {scaling!r}")
    log.info("latents %s, scaling factor %.5f (%s)", train.shape[1:], factor, scaling)
    save_npz(
        out_path,
        train=(train * factor).astype(np.float32),
        test=(test * factor).astype(np.float32),
        scaling_factor=np.float64(factor),
    )
    return factor


def load_latents(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, float]:
    """Scaled train and test latents and the scaling factor, from :func:`write_latents`."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"train", "test", "scaling_factor"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a latent cache (missing {sorted(missing)})")
        return data["train"], data["test"], float(data["scaling_factor"])
