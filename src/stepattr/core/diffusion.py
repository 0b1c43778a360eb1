"""The DDPM of the paper: linear-beta schedule, diffusers UNet2DModel, checkpoint I/O, sampler.

Images live in [-1, 1]. ``alphas_cumprod[t]`` is the paper's ``a_t``. The sampler is plain
ancestral DDPM (optionally strided, as diffusers' DDPMScheduler with "leading" spacing) and
returns, at the steps asked for, the latent ``x_t`` and the one-step estimate
``x0hat_t = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` clipped to [-1, 1] (diffusers'
``pred_original_sample`` with ``clip_sample=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from stepattr.core.io import atomic_path, load_weights, read_weights, save_json
from stepattr.core.lora import (
    build_lora_unet,
    check_base,
    is_lora_spec,
    load_lora_weights,
    lora_meta,
    lora_state_dict,
)

BETA_SCHEDULES = ("linear", "scaled_linear")


@dataclass(frozen=True)
class Schedule:
    """DDPM noise schedule: betas linear in t (the paper's), or ``scaled_linear`` (linear in
    sqrt(beta): Stable Diffusion's, diffusers' name)."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"diffusion.beta_schedule = {self.beta_schedule!r}; "
                f"expected one of {BETA_SCHEDULES}"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Schedule:
        return cls(
            int(cfg["num_train_timesteps"]),
            float(cfg["beta_start"]),
            float(cfg["beta_end"]),
            str(cfg.get("beta_schedule", "linear")),
        )

    @property
    def betas(self) -> torch.Tensor:
        if self.beta_schedule == "scaled_linear":
            root = torch.linspace(
                self.beta_start**0.5, self.beta_end**0.5, self.num_train_timesteps,
                dtype=torch.float64,
            )  # fmt: skip
            return root**2
        return torch.linspace(
            self.beta_start, self.beta_end, self.num_train_timesteps, dtype=torch.float64
        )

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``a_t`` for t = 0..T-1, float64 (cast where used)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @classmethod
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> tuple[Schedule, int, bool]:
        """The schedule, ``steps_offset`` and ``clip_sample`` of a diffusers scheduler config
        (a pretrained pipeline's), for :func:`sample`; a config this sampler would not follow
        exactly (another prediction, spacing, variance or trained betas) is refused by key."""
        expected = {
            "prediction_type": "epsilon", "timestep_spacing": "leading",
            "variance_type": "fixed_small", "trained_betas": None, "thresholding": False,
            "rescale_betas_zero_snr": False,
        }  # fmt: skip
        for key, value in expected.items():
            if config.get(key, value) != value:
                raise ValueError(
                    f"scheduler config {key} = {config[key]!r}: the DDPM sampler follows "
                    f"{key} = {value!r} only"
                )
        schedule = cls(
            int(config.get("num_train_timesteps", 1000)),
            float(config.get("beta_start", 1e-4)),
            float(config.get("beta_end", 0.02)),
            str(config.get("beta_schedule", "linear")),
        )
        return schedule, int(config.get("steps_offset", 0)), bool(config.get("clip_sample", True))

    def inference_timesteps(
        self, num_steps: int, start: int | None = None, offset: int = 0
    ) -> list[int]:
        """Descending timesteps of a ``num_steps`` sampler ("leading" spacing, shifted by
        ``offset``: a pipeline's ``steps_offset``), from ``start``. This is the one place
        that says which steps a sampler visits (diffusers' DDPMScheduler visits the same).

        With ``start`` the schedule is cut to the steps at or below it; ``start`` itself is
        always the first step, so a completion from ``x_t`` begins by denoising step t.
        """
        stride = self.num_train_timesteps // num_steps
        steps = list(range((num_steps - 1) * stride + offset, offset - 1, -stride))
        if start is None:
            return steps
        return [start] + [s for s in steps if s < start]


def add_noise(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """``sqrt(a_t) x0 + sqrt(1 - a_t) noise`` with a per-example ``t``."""
    a = alphas_cumprod.to(x0.device, x0.dtype)[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def predict_x0(
    x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """The one-step estimate ``(x_t - sqrt(1 - a_t) eps) / sqrt(a_t)``, unclipped."""
    a = alphas_cumprod.to(x_t.device, x_t.dtype)[t].reshape(-1, *([1] * (x_t.dim() - 1)))
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


# ----------------------------------------------------------------------------- the UNet


def unet_kwargs(
    model_cfg: Mapping[str, Any],
    image_size: int,
    channels: int,
    cross_attention_dim: int | None = None,
) -> dict[str, Any]:
    """diffusers ``UNet2DModel`` arguments for a config's ``model`` section, or with
    ``cross_attention_dim`` those of a text-conditioned ``UNet2DConditionModel`` (the
    text-to-image family's latent UNet, ``image_size`` then the latent side).

    ``attention_levels`` lists the resolution levels (0 = full size) that get attention, in
    the down path and, mirrored, in the up path: self-attention in a pixel UNet (the paper's
    CIFAR-10 UNet is channels (128, 256, 256, 256) with attention at level 1, the 2nd down
    and 3rd up block), cross-attention to the text states in a conditional one (whose mid
    block always has it).
    """
    chans = [int(c) for c in model_cfg["block_out_channels"]]
    attn = {int(level) for level in model_cfg.get("attention_levels", [])}
    prefix = "Attn" if cross_attention_dim is None else "CrossAttn"
    down = [f"{prefix}DownBlock2D" if i in attn else "DownBlock2D" for i in range(len(chans))]
    up = [f"{prefix}UpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(len(chans)))]
    kwargs = {
        "sample_size": int(image_size),
        "in_channels": int(channels),
        "out_channels": int(channels),
        "layers_per_block": int(model_cfg["layers_per_block"]),
        "block_out_channels": chans,
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": int(model_cfg["norm_num_groups"]),
        "dropout": float(model_cfg.get("dropout", 0.0)),
    }
    if cross_attention_dim is None:
        return kwargs | {"attention_head_dim": None, "flip_sin_to_cos": False, "freq_shift": 1}
    return kwargs | {
        "cross_attention_dim": int(cross_attention_dim),
        "attention_head_dim": int(model_cfg.get("attention_head_dim", 8)),
    }


def check_model_config(model_cfg: Mapping[str, Any], image_size: int, where: str = "model") -> None:
    """Reject architectures the UNet cannot build, before any job runs."""
    chans = [int(c) for c in model_cfg["block_out_channels"]]
    groups = int(model_cfg["norm_num_groups"])
    for i, c in enumerate(chans):
        if c % groups:
            raise ValueError(
                f"{where}.block_out_channels[{i}] = {c} is not divisible by "
                f"{where}.norm_num_groups = {groups}"
            )
    factor = 2 ** (len(chans) - 1)
    if image_size % factor:
        raise ValueError(
            f"dataset.image_size = {image_size} cannot be downsampled {len(chans) - 1} times "
            f"(it must be divisible by {factor} for {where}.block_out_channels = {chans})"
        )
    bad = [lvl for lvl in model_cfg.get("attention_levels", []) if lvl >= len(chans)]
    if bad:
        raise ValueError(
            f"{where}.attention_levels {bad} name levels that do not exist (there are {len(chans)})"
        )


UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")  # the diffusers classes a model file names


def unet_class(name: str) -> type:
    """The diffusers UNet class of that name; diffusers is imported here, not with this
    module, so that jobs which only read tables and scores start without it (~4 s a job)."""
    if name not in UNET_CLASSES:
        raise ValueError(f"unet_class {name!r} is not one of {UNET_CLASSES}")
    import diffusers

    return getattr(diffusers, name)


def use_plain_attention(unet: torch.nn.Module) -> torch.nn.Module:
    """Give every attention layer diffusers' plain matmul-softmax processor: the default
    calls ``scaled_dot_product_attention``, which has no vmap batching rule (per-example
    gradients and batched training vmap over the UNet); the result is the same attention."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())
    return unet


def build_unet(
    model_cfg: Mapping[str, Any],
    image_size: int,
    channels: int,
    cross_attention_dim: int | None = None,
) -> torch.nn.Module:
    """A freshly initialised UNet for a config (seed torch before calling for reproducibility):
    ``UNet2DModel``, or with ``cross_attention_dim`` a text-conditioned
    ``UNet2DConditionModel`` on latents of side ``image_size``; a LoRA spec (``base`` and
    ``lora``, :mod:`stepattr.core.lora`) is its base UNet with fresh adapters."""
    if is_lora_spec(model_cfg):
        return build_lora_unet(model_cfg)
    check_model_config(model_cfg, image_size)
    cls = unet_class("UNet2DModel" if cross_attention_dim is None else "UNet2DConditionModel")
    return cls(**unet_kwargs(model_cfg, image_size, channels, cross_attention_dim))


def eps_model(unet: torch.nn.Module):
    """Wrap a UNet as ``eps(x, t[, states]) -> tensor`` (diffusers returns an output object);
    a text-conditioned UNet gets the text ``states`` (B, L, D) of each row of x."""

    def eps(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        if states is None:
            return unet(x, t).sample
        return unet(x, t, encoder_hidden_states=states).sample

    return eps


# ----------------------------------------------------------------------------- checkpoints


def save_model(
    directory: str | os.PathLike,
    unet: torch.nn.Module,
    unet_config: Mapping[str, Any],
    schedule: Schedule,
    info: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` (architecture and its class, schedule,
    provenance). For a LoRA spec ``unet_config`` only the adapters are written, and the
    config names the base (:func:`stepattr.core.lora.lora_meta`)."""
    directory = Path(directory)
    lora = is_lora_spec(unet_config)
    weights = lora_state_dict(unet) if lora else unet.state_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    save_json(
        directory / "config.json",
        {
            "unet_class": type(unet).__name__,
            "unet": {} if lora else dict(unet_config),
            "schedule": {
                "num_train_timesteps": schedule.num_train_timesteps,
                "beta_start": schedule.beta_start,
                "beta_end": schedule.beta_end,
                "beta_schedule": schedule.beta_schedule,
            },
            "info": dict(info or {}),
        }
        | ({"lora": lora_meta(unet_config)} if lora else {}),
    )


def load_model(
    directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Schedule, dict[str, Any]]:
    """Load a model written by :func:`save_model`, in eval mode.

    A missing, corrupt or mismatched weights file raises ``ValueError`` naming the file, as
    does a LoRA model whose base weights changed since it was saved.
    """
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    try:
        meta = json.loads(cfg_path.read_text())
        schedule = Schedule(**meta["schedule"])
        if "lora" in meta:
            spec = {"base": meta["lora"]["base"], "lora": meta["lora"]["lora"]}
        else:
            unet = unet_class(meta.get("unet_class", "UNet2DModel"))(**meta["unet"])
    except (OSError, ValueError, KeyError, TypeError) as err:  # ValueError: bad JSON, class
        raise ValueError(
            f"{cfg_path}: not a model config written by this workflow ({err})"
        ) from err
    if "lora" in meta:
        check_base(meta["lora"], str(cfg_path))
        unet = build_lora_unet(spec)
        load_lora_weights(unet, read_weights(weights), str(weights))
    else:
        load_weights(unet, weights, cfg_path)
    return unet.to(device).eval(), schedule, meta


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = cuda, but torch sees no CUDA device")
    return torch.device(name)


# ----------------------------------------------------------------------------- sampling


@torch.no_grad()
def ddpm_step(
    eps: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    alphas_cumprod: torch.Tensor,
    noise: torch.Tensor,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step t -> t_prev (t_prev = -1 means the final step to x_0).

    Returns ``(x_prev, x0hat)`` with ``x0hat`` clipped to [-1, 1] where ``clip`` (pixels;
    latents are not bounded, diffusers' ``clip_sample=False``); the posterior is that of
    the strided chain (beta_eff = 1 - a_t / a_prev), as in diffusers' DDPMScheduler.
    """
    ac = alphas_cumprod.to(x_t.device, torch.float64)
    a_t = ac[t]
    a_prev = ac[t_prev] if t_prev >= 0 else torch.ones((), dtype=torch.float64, device=x_t.device)
    beta_eff = 1 - a_t / a_prev
    x0hat = (x_t.double() - (1 - a_t).sqrt() * eps.double()) / a_t.sqrt()
    x0hat = x0hat.clamp(-1, 1) if clip else x0hat
    mean = (a_prev.sqrt() * beta_eff / (1 - a_t)) * x0hat + (
        (1 - beta_eff).sqrt() * (1 - a_prev) / (1 - a_t)
    ) * x_t.double()
    if t_prev >= 0:
        var = (1 - a_prev) / (1 - a_t) * beta_eff
        mean = mean + var.clamp(min=1e-20).sqrt() * noise.double()
    return mean.to(x_t.dtype), x0hat.to(x_t.dtype)


def _draw_noise(
    shape: torch.Size, generator: torch.Generator | Sequence[torch.Generator]
) -> torch.Tensor:
    """Standard normal noise from one generator, or one generator per row."""
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} rows")
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generator])


@torch.no_grad()
def sample(
    unet: torch.nn.Module,
    schedule: Schedule,
    x_start: torch.Tensor,
    timesteps: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator],
    record: Sequence[int] = (),
    progress: bool = False,
    clip: bool = True,
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Ancestral sampling from ``x_start`` (the latent at ``timesteps[0]``) down to x_0.

    Noise is drawn on the CPU from ``generator`` and moved to the model's device, so a seed
    gives the same trajectory on CPU and GPU up to float rounding. ``generator`` may also be a
    sequence with one generator per row of ``x_start``: each row's noise then depends only on
    its own seed, not on the batch it runs in. Returns the final x_0 and,
    for every step in ``record``, ``(x_t, x0hat_t)`` as CPU tensors. ``clip``: pixel space
    (x0hat and x_0 clipped to [-1, 1]); False for latents.
    """
    device = next(unet.parameters()).device
    ac = schedule.alphas_cumprod
    x = x_start.to(device)
    recorded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    wanted = set(record)
    steps = list(timesteps)
    for i, t in enumerate(tqdm(steps, desc="sampling", disable=not progress, mininterval=5)):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        eps = unet(x, t_batch).sample
        noise = _draw_noise(x.shape, generator).to(device)
        x_next, x0hat = ddpm_step(eps, x, t, t_prev, ac, noise, clip)
        if t in wanted:
            recorded[t] = (x.cpu(), x0hat.cpu())
        x = x_next
    missing = wanted - recorded.keys()
    if missing:
        raise ValueError(f"steps {sorted(missing)} are not on the sampler's schedule")
    return (x.clamp(-1, 1) if clip else x).cpu(), recorded


class GuidedUNet(torch.nn.Module):
    """Classifier-free guidance around a text-conditioned UNet, shaped like a diffusers UNet
    for :func:`sample`: ``eps = eps(x, uncond) + scale * (eps(x, cond) - eps(x, uncond))``,
    row i of the batch under ``cond[i]``; scale 1 is the plain conditional model (no
    unconditional pass), scale 0 the unconditional model alone (no conditional pass)."""

    def __init__(
        self, unet: torch.nn.Module, cond: torch.Tensor, uncond: torch.Tensor, scale: float
    ) -> None:
        super().__init__()
        self.unet, self.scale = unet, float(scale)
        self.cond, self.uncond = cond, uncond  # (B, L, D), (L, D)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
        cond = self.cond.to(x.device, x.dtype)
        uncond = self.uncond.to(x.device, x.dtype).expand_as(cond)
        if self.scale == 0.0:
            return SimpleNamespace(sample=self.unet(x, t, encoder_hidden_states=uncond).sample)
        eps_cond = self.unet(x, t, encoder_hidden_states=cond).sample
        if self.scale == 1.0:
            return SimpleNamespace(sample=eps_cond)
        eps_uncond = self.unet(x, t, encoder_hidden_states=uncond).sample
        return SimpleNamespace(sample=eps_uncond + self.scale * (eps_cond - eps_uncond))
