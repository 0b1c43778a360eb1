"""Prompted samples of a text-to-image model, and how well they follow their prompts.

For each configured prompt (``sampling.prompts``: a text and, where it names one, the class
it asks for) and each guidance scale, ``per_prompt`` latents are sampled with classifier-free
guidance (:class:`stepattr.core.diffusion.GuidedUNet`; scale 1 = the plain conditional model,
no guidance), decoded by the frozen autoencoder and classified by the workflow's classifier.
Sample j of prompt p starts from noise keyed by (seed, p, j), so every guidance scale
denoises the same starting latents with the same noises. The table gives, per prompt and
scale, how many samples the classifier puts in the prompt's class, with a Wilson interval,
and a pooled row per scale.

:func:`prompted_targets` samples the family's attribution targets the same way, recording
their latent trajectories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr.core.diffusion import GuidedUNet, Schedule, sample
from stepattr.core.seeds import GENERATED_TARGETS, derive_seed
from stepattr.detectors.classifier import predict_proba
from stepattr.detectors.wilson import wilson_interval

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
    stream: int = PROMPTED_SAMPLES,
    record: Sequence[int] = (),
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """``count`` latents (count, C, h, w) sampled under ``prompt`` at one guidance scale, sample
    j from noise keyed by (stream, seed, prompt_index, j), and (x_t, x0hat_t) at the steps
    ``record`` (:func:`stepattr.core.diffusion.sample`)."""
    if prompt not in states:
        raise ValueError(f"sampling.prompts: {prompt!r} has no cached text states")
    cfg = unet.config
    shape = (int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size))
    generators = [
        torch.Generator().manual_seed(derive_seed(stream, seed, prompt_index, j))
        for j in range(count)
    ]
    x_start = torch.stack([torch.randn(shape, generator=g) for g in generators])
    cond = torch.from_numpy(states[prompt]).expand(count, *states[prompt].shape)
    guided = GuidedUNet(unet, cond, torch.from_numpy(states[""]), guidance)
    timesteps = schedule.inference_timesteps(inference_steps)
    return sample(guided, schedule, x_start, timesteps, generators, record=record, clip=False)


def prompted_targets(
    unet: torch.nn.Module,
    schedule: Schedule,
    vae: Any,
    scaling_factor: float,
    states: Mapping[str, np.ndarray],
    prompts: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    num: int,
    grid: Sequence[int],
    inference_steps: int,
    guidance: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """The text-to-image family's ``generated`` target set: target i is sample i // P of
    prompt i % P (P prompts, in config order), sampled with guidance ``guidance``; its latent
    trajectory (x_t, x0hat_t unclipped) at the grid steps, its prompt, the prompt's class
    (-1 without a label) and the decoded x_t, x0hat_t and x_0 (for figures and pixel
    baselines)."""
    if not prompts:
        raise ValueError("family text_to_image: sampling.prompts is empty; targets need prompts")
    names = [str(c) for c in class_names]
    order = [(i % len(prompts), i // len(prompts)) for i in range(num)]
    by_prompt = {}
    for p, prompt in enumerate(prompts):
        count = sum(1 for q, _ in order if q == p)
        if count:
            by_prompt[p] = prompt_latents(
                unet, schedule, states, prompt["text"], p, count, guidance, inference_steps,
                seed, stream=GENERATED_TARGETS, record=grid,
            )  # fmt: skip
    x_t = torch.stack([torch.stack([by_prompt[p][1][t][0][j] for t in grid]) for p, j in order])
    x0hat = torch.stack([torch.stack([by_prompt[p][1][t][1][j] for t in grid]) for p, j in order])
    x0 = torch.stack([by_prompt[p][0][j] for p, j in order])
    labels = [prompt_class(prompts[p], p, names) for p, _ in order]

    def decoded(latents: torch.Tensor) -> np.ndarray:  # (N, G, C, h, w) -> images
        images = decode(vae, latents.flatten(0, 1), scaling_factor)
        return images.reshape(num, len(grid), *images.shape[1:]).numpy()

    return {
        "x_t": x_t.numpy(),
        "x0hat": x0hat.numpy(),
        "x0": x0.numpy(),
        "grid": np.asarray(grid, dtype=np.int64),
        "target_id": np.arange(num, dtype=np.int64),
        "label": np.asarray(labels, dtype=np.int64),
        "source_index": np.full(num, -1, dtype=np.int64),
        "prompt": np.array([prompts[p]["text"] for p, _ in order], dtype=str),
        "decoded_x_t": decoded(x_t),
        "decoded_x0hat": decoded(x0hat),
        "decoded_x0": decode(vae, x0, scaling_factor).numpy(),
    }


def prompt_class(prompt: Mapping[str, Any], index: int, names: Sequence[str]) -> int:
    """The class index a prompt asks for (-1 without a label); an error naming the key."""
    label = prompt.get("label")
    if label is None:
        return -1
    if str(label) not in names:
        raise ValueError(
            f"sampling.prompts[{index}].label = {label!r} is not a class ({', '.join(names)})"
        )
    return list(names).index(str(label))


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
            latents, _ = prompt_latents(
                unet, schedule, states, prompt["text"], p, per_prompt, scale, inference_steps, seed
            )
            x = decode(vae, latents, scaling_factor)
            decoded.append(x)
            label = prompt_class(prompt, p, names)
            if label < 0:
                continue
            agree = int((predict_proba(classifier, x).argmax(1) == label).sum())
            rows.append(_row(prompt["text"], names[label], scale, per_prompt, agree))
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
