"""Prompted samples of a text-to-image model, and how well they follow their prompts.

For each configured prompt (``sampling.prompts``: a text and, where it names one, the class
it asks for) and each guidance scale, ``per_prompt`` latents are sampled with classifier-free
guidance (:class:`stepattr.core.diffusion.GuidedUNet`; scale 1 = the plain conditional model,
no guidance), decoded by the frozen autoencoder and classified by the workflow's classifier.
Sample j of prompt p starts from noise keyed by (seed, p, j), so every guidance scale
denoises the same starting latents with the same noises. The table gives, per prompt and
scale, how many samples the classifier puts in the prompt's class, with a Wilson interval,
and a pooled row per scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr.core.diffusion import GuidedUNet, Schedule, sample
from stepattr.core.seeds import derive_seed
from stepattr.transitions.classifier import predict_proba
from stepattr.transitions.curves import wilson_interval

PROMPTED_SAMPLES = 13  # seed stream (after stepattr.core.seeds' tags and the stages' own)
COLUMNS = ["prompt", "label", "guidance", "n", "agree", "rate", "ci_low", "ci_high"]


def prompt_latents(
    unet: torch.nn.Module,
    schedule: Schedule,
    states: Mapping[str, np.ndarray],
    prompt: str,
    prompt_index: int,
    count: int,
    guidance: float,
    inference_steps: int,
    seed: int,
) -> torch.Tensor:
    """``count`` latents (count, C, h, w) sampled under ``prompt`` at one guidance scale."""
    if prompt not in states:
        raise ValueError(f"sampling.prompts: {prompt!r} has no cached text states")
    cfg = unet.config
    shape = (int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size))
    generators = [
        torch.Generator().manual_seed(derive_seed(PROMPTED_SAMPLES, seed, prompt_index, j))
        for j in range(count)
    ]
    x_start = torch.stack([torch.randn(shape, generator=g) for g in generators])
    cond = torch.from_numpy(states[prompt]).expand(count, *states[prompt].shape)
    guided = GuidedUNet(unet, cond, torch.from_numpy(states[""]), guidance)
    timesteps = schedule.inference_timesteps(inference_steps)
    x0, _ = sample(guided, schedule, x_start, timesteps, generators, clip=False)
    return x0


def decode(vae: Any, latents: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Images in [-1, 1] from scaled latents."""
    with torch.no_grad():
        out = vae.decode(latents.to(vae.device) / scaling_factor).sample
    return out.clamp(-1, 1).cpu()


def prompt_following(
    unet: torch.nn.Module,
    schedule: Schedule,
    vae: Any,
    scaling_factor: float,
    classifier: Any,
    states: Mapping[str, np.ndarray],
    prompts: Sequence[Mapping[str, Any]],
    guidance_scales: Sequence[float],
    per_prompt: int,
    inference_steps: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[float, torch.Tensor]]:
    """The table (see the module docstring) and, per scale, the decoded samples in prompt order
    (len(prompts) x per_prompt images)."""
    names = list(classifier.class_names)
    rows, images = [], {}
    for scale in guidance_scales:
        decoded = []
        for p, prompt in enumerate(prompts):
            latents = prompt_latents(
                unet, schedule, states, prompt["text"], p, per_prompt, scale, inference_steps, seed
            )
            x = decode(vae, latents, scaling_factor)
            decoded.append(x)
            label = prompt.get("label")
            if label is None:
                continue
            if str(label) not in names:
                raise ValueError(
                    f"sampling.prompts[{p}].label = {label!r} is not a class of the classifier "
                    f"({', '.join(names)})"
                )
            agree = int((predict_proba(classifier, x).argmax(1) == names.index(str(label))).sum())
            rows.append(_row(prompt["text"], str(label), scale, per_prompt, agree))
        images[float(scale)] = torch.cat(decoded)
        mine = [r for r in rows if r["guidance"] == scale]
        if mine:
            total = sum(r["n"] for r in mine)
            rows.append(_row("(all prompts)", "", scale, total, sum(r["agree"] for r in mine)))
    return pd.DataFrame(rows, columns=COLUMNS), images


def _row(prompt: str, label: str, scale: float, n: int, agree: int) -> dict[str, Any]:
    low, high = (float(v) for v in wilson_interval(agree, n))
    return {"prompt": prompt, "label": label, "guidance": float(scale), "n": n,
            "agree": agree, "rate": agree / n, "ci_low": low, "ci_high": high}  # fmt: skip
