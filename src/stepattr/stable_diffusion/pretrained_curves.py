"""Feature transitions of a pretrained pipeline: when does a trajectory commit to a feature?

The blog's claim for Stable Diffusion, measured on the pipeline as it comes (no LoRA): for
each configured prompt, ``trajectories`` samples are drawn by stochastic ancestral sampling
(the workflow's DDPM sampler on the pipeline's own schedule, ``inference_steps`` steps).
At each grid step t (the scheduler step nearest to ``sampling.grid``'s t) the trajectory's
latent x_t is completed N times with fresh noise, decoded, and shown to a CLIP zero-shot
detector. A feature is a list of prompts (a pair, or more): the detector picks the prompt
whose text embedding is nearest to the image's. The trajectory's value of a feature is the
detector's pick on its own final image; P(feature | x_t) is the fraction of completions from
x_t that get the same pick, with a Wilson 95% interval, and the steepest-rise interval is
that of :mod:`stepattr.transitions.curves`.

The detector is a transformers ``CLIPModel`` folder (or cached hub id) holding its
tokenizer: OpenAI's CLIP for Stable Diffusion, or on CPU the small CLIP that the
text-to-image family trains on its captions (``text_encoder/clip``). Images are resized to
the vision tower's size and normalised with the folder's image-processor mean and std where
it has one; without one they go in as [-1, 1], the range the workflow's own CLIP trained on.

Every random draw is keyed by (seed, prompt, trajectory[, grid step, completion]), so the
curves do not depend on the batching.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stepattr.core.diffusion import GuidedUNet, Schedule, sample
from stepattr.core.seeds import PIPELINE_TRANSITIONS, derive_seed
from stepattr.core.settings import settings_from
from stepattr.detectors.wilson import wilson_interval
from stepattr.text.encoder import projected, token_ids
from stepattr.transitions.curves import interval_table

CURVE_COLUMNS = [
    "prompt_id", "prompt", "trajectory", "feature", "value", "grid_step", "step", "p",
    "ci_low", "ci_high", "n",
]  # fmt: skip


@dataclass(frozen=True)
class Feature:
    """A configured feature: its name and the prompts the detector chooses among."""

    name: str
    prompts: list[str]


def features_from_config(entries: Sequence[Mapping[str, Any]]) -> list[Feature]:
    """``pipeline.transitions.features`` as :class:`Feature` objects (names must be unique)."""
    features = [Feature(str(e["name"]), [str(p) for p in e["prompts"]]) for e in entries]
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline.transitions.features: names repeat ({names})")
    return features


class ZeroShotCLIP:
    """CLIP zero-shot choice among each feature's prompts (transformers ``CLIPModel``)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        features: Sequence[Feature],
        normalize: tuple[Sequence[float], Sequence[float]] | None,
        name: str,
    ) -> None:
        self.model = model.eval()
        self.features = list(features)
        self.name = name
        vision = model.config.vision_config
        self.size = int(vision.image_size)
        self.channels = int(vision.num_channels)
        device = next(model.parameters()).device
        self.normalize = None
        if normalize is not None:
            mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in normalize)
            self.normalize = (mean, std)
        context = int(model.config.text_config.max_position_embeddings)
        self.text = []
        with torch.no_grad():
            for f in self.features:
                key = f"pipeline.transitions.features[{f.name}].prompts"
                ids = token_ids(tokenizer, f.prompts, context, key).to(device)
                self.text.append(
                    F.normalize(projected(model.get_text_features(input_ids=ids)), dim=-1)
                )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (N, C, H, W) -> the vision tower's input."""
        x = images.float()
        if x.shape[1] != self.channels:
            x = (
                x.mean(1, keepdim=True)
                if self.channels == 1
                else x.expand(-1, self.channels, -1, -1)
            )
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True)
            x = x.clamp(-1, 1)
        if self.normalize is None:
            return x
        mean, std = self.normalize
        return ((x + 1) / 2 - mean) / std

    @torch.no_grad()
    def choose(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """The chosen prompt per image and feature, int64 ``(N, F)``."""
        device = self.text[0].device
        out = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start : start + batch_size].to(device))
            image = F.normalize(
                projected(self.model.get_image_features(pixel_values=batch)), dim=-1
            )
            out.append(torch.stack([(image @ t.T).argmax(1) for t in self.text], dim=1).cpu())
        return torch.cat(out).numpy().astype(np.int64)


def load_zero_shot(
    folder: str | os.PathLike, features: Sequence[Feature], device: str | torch.device = "cpu"
) -> ZeroShotCLIP:
    """The detector of ``pipeline.transitions.clip`` (a local folder, already resolved)."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = Path(folder)
    key = f"pipeline.transitions.clip = {str(folder)!r}"
    config = folder / "config.json"
    if not config.is_file() or json.loads(config.read_text()).get("model_type") != "clip":
        raise ValueError(
            f"{key}: not a transformers CLIPModel folder (config.json, model_type clip)"
        )
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{key}: cannot load the CLIP and its tokenizer ({err})") from err
    normalize = None
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        cfg = json.loads(processor.read_text())
        normalize = (cfg["image_mean"], cfg["image_std"])
    return ZeroShotCLIP(model.to(device), tokenizer, features, normalize, f"CLIP {folder}")


def check_prompts(pipeline: Any, prompts: Sequence[str]) -> None:
    """A prompt the pipeline's tokenizer would cut is an error naming it (empty is allowed)."""
    context = int(pipeline.text_encoder.config.max_position_embeddings)
    token_ids(
        pipeline.tokenizer, prompts, context, "pipeline.transitions.prompts", allow_empty=True
    )


def grid_positions(timesteps: Sequence[int], grid: Sequence[int]) -> list[int]:
    """Index into the scheduler's ``timesteps`` of the step nearest to each grid t."""
    timesteps = np.asarray(timesteps)
    positions = [int(np.argmin(np.abs(timesteps - int(t)))) for t in grid]
    if len(set(positions)) != len(positions):
        raise ValueError(
            f"sampling.grid {list(grid)} maps onto repeated scheduler steps "
            f"{[int(timesteps[i]) for i in positions]}: raise pipeline.transitions.inference_steps"
        )
    return positions


class AncestralSampler:
    """A pipeline's UNet, text encoder and autoencoder driven by the workflow's DDPM sampler
    (:func:`stepattr.core.diffusion.sample`) on the pipeline's own schedule and steps offset,
    able to start from any of its steps: the sampler both families use."""

    def __init__(self, pipeline: Any, steps: int, guidance: float) -> None:
        self.pipeline = pipeline
        self.schedule, offset, self.clip = Schedule.from_scheduler_config(pipeline.scheduler.config)
        self.timesteps = self.schedule.inference_timesteps(int(steps), offset=offset)
        self.guidance = float(guidance)
        self.device = pipeline.unet.device
        unet = pipeline.unet.config
        size = int(unet.sample_size)
        self.shape = (int(unet.in_channels), size, size)

    @torch.no_grad()
    def states(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's text states and the empty text's, each (1, L, D)."""
        cond, uncond = self.pipeline.encode_prompt(prompt, self.device, 1, True, "")
        return cond, uncond

    def noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """One initial latent per generator (DDPM's initial noise is unscaled)."""
        x = torch.stack([torch.randn(self.shape, generator=g) for g in generators])
        return x.to(self.device, self.pipeline.unet.dtype)

    def run(
        self,
        latents: torch.Tensor,
        start: int,
        states: tuple[torch.Tensor, torch.Tensor],
        generators: Sequence[torch.Generator],
        keep: Sequence[int] = (),
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Denoise ``latents`` from scheduler position ``start`` to the end; also return the
        latents *before* the steps at positions ``keep`` (x_t for t = timesteps[pos])."""
        cond, uncond = states
        guided = GuidedUNet(
            self.pipeline.unet, cond.expand(len(latents), -1, -1), uncond[0], self.guidance
        )
        end, recorded = sample(
            guided, self.schedule, latents, self.timesteps[start:], list(generators),
            record=[self.timesteps[pos] for pos in keep], clip=self.clip,
        )  # fmt: skip
        return end, {pos: recorded[self.timesteps[pos]][0] for pos in keep}

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] on the CPU."""
        vae = self.pipeline.vae
        latents = latents.to(self.device, vae.dtype)
        return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1).float().cpu()


def generators(*keys: int, count: int) -> list[torch.Generator]:
    """``count`` CPU generators keyed by (PIPELINE_TRANSITIONS, *keys, index)."""
    return [
        torch.Generator("cpu").manual_seed(derive_seed(PIPELINE_TRANSITIONS, *keys, j))
        for j in range(count)
    ]


@dataclass(frozen=True)
class PipelineTransitionsSettings:
    """The ``pipeline.transitions`` section (config/schema.yaml), typed once where its job
    starts; ``features`` are the detector's (:func:`features_from_config`)."""

    clip: str | None
    prompts: tuple[str, ...]
    features: tuple[Feature, ...]
    trajectories: int
    completions: int
    inference_steps: int
    guidance: float
    figure_trajectories: int
    seed: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PipelineTransitionsSettings:
        section = dict(section) | {"features": tuple(features_from_config(section["features"]))}
        return settings_from(cls, section, "pipeline.transitions")


def pipeline_transitions(
    pipeline: Any,
    detector: ZeroShotCLIP,
    cfg: PipelineTransitionsSettings,
    grid: Sequence[int],
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Curves ``P(feature | x_t)`` (:data:`CURVE_COLUMNS`) for every prompt, trajectory and
    feature of ``cfg`` (``pipeline.transitions``), and the trajectories' final images and
    their x_t at the grid steps, decoded (``{"final": (P*T, C, H, W), "x_t": (P*T, G, ...)}``)."""
    sampler = AncestralSampler(pipeline, cfg.inference_steps, cfg.guidance)
    positions = grid_positions(sampler.timesteps, grid)
    seed, n, count = cfg.seed, cfg.completions, cfg.trajectories
    rows, finals, noisy = [], [], []
    jobs = list(enumerate(cfg.prompts))
    bar = tqdm(total=len(jobs) * count * len(grid), desc="completions", disable=not progress,
               mininterval=10)  # fmt: skip
    for i, prompt in jobs:
        states = sampler.states(prompt)
        gens = [generators(seed, i, j, count=1)[0] for j in range(count)]
        end, kept = sampler.run(sampler.noise(gens), 0, states, gens, positions)
        final = sampler.decode(end)
        values = detector.choose(final)  # (count, F)
        finals.append(final)
        noisy.append(torch.stack([sampler.decode(kept[pos]) for pos in positions], dim=1))
        for j in range(count):
            for g, pos in enumerate(positions):
                completion_gens = generators(seed, i, j, 1 + g, count=n)
                start = kept[pos][j : j + 1].expand(n, *sampler.shape)
                done, _ = sampler.run(start, pos, states, completion_gens)
                picks = detector.choose(sampler.decode(done))
                hits = (picks == values[j]).sum(0)
                low, high = wilson_interval(hits, np.full_like(hits, n))
                for f, feature in enumerate(detector.features):
                    rows.append({
                        "prompt_id": i, "prompt": str(prompt), "trajectory": j,
                        "feature": feature.name, "value": feature.prompts[values[j, f]],
                        "grid_step": int(grid[g]), "step": sampler.timesteps[pos],
                        "p": hits[f] / n, "ci_low": low[f], "ci_high": high[f], "n": n,
                    })  # fmt: skip
                bar.update()
    bar.close()
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return curves, {"final": torch.cat(finals), "x_t": torch.cat(noisy)}


def interval_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (prompt, trajectory, feature): its value and steepest-rise interval."""
    return interval_table(curves, ("prompt_id", "trajectory", "feature"), ("prompt", "value"))


def summary_rows(intervals: pd.DataFrame) -> pd.DataFrame:
    """Per prompt and feature: trajectories, median transition step, mean and max rise."""
    grouped = intervals.groupby(["prompt_id", "prompt", "feature"], sort=False)
    return grouped.agg(
        trajectories=("trajectory", "size"),
        median_transition_step=("transition_step", "median"),
        mean_rise=("rise", "mean"),
        max_rise=("rise", "max"),
    ).reset_index()
