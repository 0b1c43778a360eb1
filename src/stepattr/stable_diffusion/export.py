"""Save the text-to-image family's parts as a ``StableDiffusionPipeline`` folder.

The pipeline must generate what the workflow's own sampler generates: the same UNet weights,
the same DDPM betas (linear, no sample clipping: latents are unbounded), the autoencoder's
``scaling_factor`` set to the factor the latent cache was scaled by (the pipeline divides by
it before decoding), and the tokenizer's ``model_max_length`` set to the encoder's context
(the pipeline pads prompts to it, as the state cache did). No safety checker: these are the
workflow's own models.

One difference is the pipeline's and cannot be configured away: Stable Diffusion pipelines
force ``steps_offset = 1``, so an n-step pipeline sampler visits t = 1 + k * (T / n) where the
workflow's sampler visits k * (T / n). Models, betas and guidance are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from stepattr.core.diffusion import Schedule, load_model
from stepattr.core.io import atomic_dir
from stepattr.latents.autoencoder import load_autoencoder
from stepattr.text.encoder import load_text_encoder


def ddpm_scheduler(schedule: Schedule) -> Any:
    """diffusers' DDPMScheduler with this workflow's schedule (ancestral, epsilon, unclipped;
    the pipelines' steps_offset, see the module docstring)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
        timestep_spacing="leading",
        steps_offset=1,
    )


def assemble_pipeline(
    unet_dir: str | os.PathLike,
    autoencoder: str | os.PathLike,
    text_encoder: str | os.PathLike,
    scaling_factor: float,
) -> Any:
    """A ``StableDiffusionPipeline`` of the saved UNet, autoencoder and text encoder."""
    from diffusers import StableDiffusionPipeline

    unet, schedule, meta = load_model(unet_dir)
    if meta.get("unet_class") != "UNet2DConditionModel":
        raise ValueError(f"{unet_dir}: not a text-conditioned model (a pipeline needs one)")
    vae = load_autoencoder(autoencoder)
    vae.register_to_config(scaling_factor=float(scaling_factor))
    tokenizer, encoder = load_text_encoder(text_encoder)
    tokenizer.model_max_length = int(encoder.config.max_position_embeddings)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=ddpm_scheduler(schedule),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipeline: Any, out_dir: str | os.PathLike) -> Path:
    """Write the pipeline folder atomically (safetensors weights); return its path."""
    with atomic_dir(out_dir) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
    return Path(out_dir)


def load_pipeline(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """A saved pipeline folder, safetensors only, never from the hub; a missing component is
    named."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    needed = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise ValueError(f"{folder}: not a StableDiffusionPipeline folder (no {missing[0]})")
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(folder), use_safetensors=True, local_files_only=True, safety_checker=None,
        requires_safety_checker=False,
    )  # fmt: skip
    return pipeline.to(device)


#: the file diffusers' ``load_lora_weights`` looks for in a LoRA folder
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


@torch.no_grad()
def export_lora(model_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> float:
    """Write a LoRA model's adapters in diffusers' LoRA format, for use outside the workflow:
    ``StableDiffusionPipeline.from_pretrained(base).load_lora_weights(out_dir)``, ``base``
    being the pipeline folder whose ``unet/`` the model's config.json names.

    The folder is checked before it is kept: that pipeline with the exported LoRA loaded by
    diffusers must predict what the workflow's model predicts on one random input. Returns
    that check's largest absolute difference. The adapter config (rank, alpha, target
    modules) travels in the file's metadata, so alpha != rank loads at the right scale.
    """
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    unet, _, meta = load_model(model_dir)
    if "lora" not in meta:
        raise ValueError(f"{model_dir}: not a LoRA model (its config.json names no base)")
    # peft's key names, not diffusers' older "lora.down/up" ones: diffusers' loader reads a
    # file that mixes both (attention converted, convolutions not) as peft's and drops the rest
    layers = get_peft_model_state_dict(unet)
    pipeline = load_pipeline(Path(meta["lora"]["base"]).parent)
    gen = torch.Generator().manual_seed(seed)
    cfg = unet.config
    x = torch.randn(2, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=gen)
    states = torch.randn(2, 4, cfg.cross_attention_dim, generator=gen)
    t = torch.tensor([1, pipeline.scheduler.config.num_train_timesteps // 2])
    want = unet(x, t, encoder_hidden_states=states).sample
    with atomic_dir(out_dir) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=layers, weight_name=LORA_WEIGHTS,
            unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        )  # fmt: skip
        pipeline.load_lora_weights(str(tmp), weight_name=LORA_WEIGHTS)
        got = pipeline.unet(x, t, encoder_hidden_states=states).sample
        diff = float((got - want).abs().max())
        scale = float(want.abs().max())
        if not diff <= 1e-4 * max(scale, 1.0):
            raise ValueError(
                f"{model_dir}: the exported LoRA, loaded by diffusers, predicts up to {diff:.3g} "
                f"away from the model (|eps| up to {scale:.3g}); nothing written to {out_dir}"
            )
    return diff
