"""Feature transitions: at which denoising step does a sample decide which class it shows?

For every target and grid step t, N completions are sampled from the target's latent x_t
(ancestral sampling t -> 0 with the original model) and classified by a feature detector.
P(feature | x_t) is the fraction of completions that show the target's feature: the
detector's class of the target's final x_0 for generated targets, the true label for
validation targets. Each estimate carries a Wilson 95% interval.

The text-to-image family completes latents (:class:`PromptedCompletions`): under each
target's prompt with classifier-free guidance (0: the unconditional model alone), decoded
to images before the detector sees them; its targets' feature is the detector's class of
their decoded x_0.

The steepest-rise interval of a curve is the pair of adjacent grid steps t_start > t_end
(ordered from high t to low t, the sampling direction) with the largest increase
P(t_end) - P(t_start); ties go to the earliest pair (highest t). The denoising steps inside
it are those with t_end < t <= t_start; ``transition_step`` is the midpoint of the pair.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from stepattr.core.diffusion import GuidedUNet, Schedule, load_model, sample
from stepattr.core.seeds import derive_seed
from stepattr.core.settings import settings_from
from stepattr.detectors.detector import Detector
from stepattr.detectors.wilson import wilson_interval

CURVE_COLUMNS = ["target_id", "step", "p", "ci_low", "ci_high", "n", "feature", "detector"]


@dataclass(frozen=True)
class TransitionsSettings:
    """The ``transitions`` section (config/schema.yaml), typed once where a job starts."""

    detector: str
    completions: int
    completion_steps: int
    batch_size: int
    top_k: int
    figure_targets: int
    seed: int
    method: str | None = None
    guidance: float | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TransitionsSettings:
        return settings_from(cls, section, "transitions")


@dataclass(frozen=True)
class PromptedCompletions:
    """How the text-to-image family completes latents: each target's prompt states
    (targets, L, D), the empty text's (L, D), the guidance scale, and the decoder from latents
    to images in [-1, 1]."""

    states: torch.Tensor
    empty: torch.Tensor
    guidance: float
    decode: Callable[[torch.Tensor], torch.Tensor]


def completion_generators(seed: int, target_id: int, step: int, n: int) -> list[torch.Generator]:
    """One generator per completion, seeded by (seed, target, step, completion index).

    A completion thus depends on nothing but its own coordinates: not on the batch it runs
    in, nor on how many completions are drawn.
    """
    return [
        torch.Generator().manual_seed(derive_seed(seed, target_id, step, j, bits=64))
        for j in range(n)
    ]


def sample_completions(
    unet: torch.nn.Module,
    schedule: Schedule,
    x_t: torch.Tensor,
    step: int,
    target_ids: Sequence[int],
    n: int,
    completion_steps: int,
    seed: int,
    batch_size: int,
    prompted: PromptedCompletions | None = None,
) -> torch.Tensor:
    """``n`` completions of each ``x_t`` (T, C, H, W) at ``step``: images (T, n, C', H', W').

    Ancestral sampling on ``schedule.inference_timesteps(completion_steps, start=step)``;
    rows of all targets share batches of up to ``batch_size`` images. ``prompted``: latents
    completed under their target's prompt and decoded.
    """
    if len(target_ids) != len(x_t):
        raise ValueError(f"{len(target_ids)} target ids for {len(x_t)} latents")
    timesteps = schedule.inference_timesteps(completion_steps, start=step)
    starts = x_t.repeat_interleave(n, dim=0)
    gens = [g for tid in target_ids for g in completion_generators(seed, int(tid), step, n)]
    states = None if prompted is None else prompted.states.repeat_interleave(n, dim=0)
    out = []
    for lo in range(0, len(starts), batch_size):
        hi = lo + batch_size
        if prompted is None:
            x0, _ = sample(unet, schedule, starts[lo:hi], timesteps, gens[lo:hi])
        else:
            guided = GuidedUNet(unet, states[lo:hi], prompted.empty, prompted.guidance)
            x0, _ = sample(guided, schedule, starts[lo:hi], timesteps, gens[lo:hi], clip=False)
            x0 = prompted.decode(x0)
        out.append(x0)
    images = torch.cat(out)
    return images.reshape(len(x_t), n, *images.shape[1:])


def target_features(
    detector: Detector, x0: np.ndarray | torch.Tensor, labels: np.ndarray
) -> np.ndarray:
    """The feature of each target: its label where known (>= 0), else the detector's class of x0."""
    labels = np.asarray(labels, dtype=np.int64)
    features = labels.copy()
    unknown = labels < 0
    if unknown.any():
        features[unknown] = detector.classify(torch.as_tensor(np.asarray(x0))[unknown])
    return features


def completion_classes(
    unet: torch.nn.Module,
    schedule: Schedule,
    x_t: np.ndarray,
    grid: Sequence[int],
    target_ids: Sequence[int],
    detector: Detector,
    n: int,
    completion_steps: int,
    seed: int,
    batch_size: int,
    progress: bool = False,
    prompted: PromptedCompletions | None = None,
) -> np.ndarray:
    """Detector class of every completion: int64 (targets, grid steps, n) from x_t (T, G, ...)."""
    x_t = torch.as_tensor(np.asarray(x_t, dtype=np.float32))
    classes = np.empty((x_t.shape[0], len(grid), n), dtype=np.int64)
    for g, step in enumerate(tqdm(grid, desc="grid steps", disable=not progress)):
        images = sample_completions(
            unet, schedule, x_t[:, g], int(step), target_ids, n, completion_steps, seed,
            batch_size, prompted,
        )  # fmt: skip
        flat = detector.classify(images.reshape(-1, *images.shape[2:]))
        classes[:, g] = flat.reshape(x_t.shape[0], n)
    return classes


def curve_table(
    classes: np.ndarray,
    features: np.ndarray,
    grid: Sequence[int],
    target_ids: Sequence[int],
    detector_name: str,
) -> pd.DataFrame:
    """P(feature | x_t) with Wilson 95% CIs, one row per (target, step), in input order."""
    hits = (classes == np.asarray(features)[:, None, None]).sum(axis=2)
    n = classes.shape[2]
    low, high = wilson_interval(hits, np.full_like(hits, n))
    T, G = hits.shape
    return pd.DataFrame(
        {
            "target_id": np.repeat(np.asarray(target_ids, dtype=np.int64), G),
            "step": np.tile(np.asarray(grid, dtype=np.int64), T),
            "p": (hits / n).ravel(),
            "ci_low": low.ravel(),
            "ci_high": high.ravel(),
            "n": n,
            "feature": np.repeat(np.asarray(features, dtype=np.int64), G),
            "detector": detector_name,
        },
        columns=CURVE_COLUMNS,
    )


def steepest_rise(steps: Sequence[int], p: Sequence[float]) -> tuple[int, int, float]:
    """``(t_start, t_end, rise)`` of the steepest-rise interval (see the module docstring)."""
    steps, p = np.asarray(steps), np.asarray(p, dtype=np.float64)
    if len(steps) < 2 or len(steps) != len(p):
        raise ValueError("a steepest-rise interval needs a curve of at least two grid steps")
    order = np.argsort(-steps, kind="stable")
    steps, p = steps[order], p[order]
    rises = p[1:] - p[:-1]
    i = int(np.argmax(rises))
    return int(steps[i]), int(steps[i + 1]), float(rises[i])


def interval_table(
    curves: pd.DataFrame,
    keys: Sequence[str] = ("target_id",),
    carried: Sequence[str] = ("feature", "detector"),
) -> pd.DataFrame:
    """One row per curve (a group of ``keys``): the ``keys``, the ``carried`` columns (constant
    along a curve), its steepest-rise interval and the probabilities at both ends."""
    rows = []
    for _, curve in curves.groupby(list(keys), sort=False):
        t_start, t_end, rise = steepest_rise(curve["step"], curve["p"])
        p_at = dict(zip(curve["step"], curve["p"], strict=True))
        first = curve.iloc[0]
        rows.append(
            {
                **{c: first[c] for c in (*keys, *carried)},
                "t_start": t_start,
                "t_end": t_end,
                "p_start": p_at[t_start],
                "p_end": p_at[t_end],
                "rise": rise,
                "transition_step": (t_start + t_end) / 2,
            }
        )
    return pd.DataFrame(rows)


def load_targets(
    path: str | os.PathLike, keys: Sequence[str] = ("x_t", "x0", "grid", "target_id", "label")
) -> dict[str, np.ndarray]:
    """Arrays of a target-set file (names the file if one is missing)."""
    with np.load(path, allow_pickle=False) as data:
        missing = set(keys) - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a target-set file (missing {sorted(missing)})")
        return {k: data[k] for k in keys}


def feature_curves(
    targets_path: str | os.PathLike,
    model_dir: str | os.PathLike,
    detector: Detector,
    cfg: TransitionsSettings,
    device: str | torch.device = "cpu",
    progress: bool = False,
    prompted: Callable[[np.ndarray], PromptedCompletions] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and steepest-rise intervals of one target set.

    ``prompted`` (the text-to-image family): the targets' prompts -> how to complete them.
    """
    keys = ("x_t", "x0", "grid", "target_id", "label")
    targets = load_targets(targets_path, keys + (("prompt", "decoded_x0") if prompted else ()))
    unet, schedule, _ = load_model(model_dir, device=device)
    if prompted is None:
        completions, features = None, target_features(detector, targets["x0"], targets["label"])
    else:
        completions = prompted(targets["prompt"])
        features = detector.classify(torch.from_numpy(targets["decoded_x0"]))
    classes = completion_classes(
        unet,
        schedule,
        targets["x_t"],
        targets["grid"].tolist(),
        targets["target_id"].tolist(),
        detector,
        n=cfg.completions,
        completion_steps=cfg.completion_steps,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        progress=progress,
        prompted=completions,
    )
    curves = curve_table(classes, features, targets["grid"], targets["target_id"], detector.name)
    return curves, interval_table(curves)


def prompted_completions(
    text_states: str | os.PathLike,
    vae: Any,
    scaling_factor: float,
    guidance: float,
) -> Callable[[np.ndarray], PromptedCompletions]:
    """The text-to-image family's completions for targets with the given prompts: their
    cached text states, guidance ``guidance``, decoded by ``vae``."""
    from stepattr.targets.prompts import decode
    from stepattr.text.encoder import EMPTY, states_for

    def for_prompts(prompts: np.ndarray) -> PromptedCompletions:
        states = states_for(text_states, [EMPTY, *prompts.tolist()])  # one read of the cache
        return PromptedCompletions(
            states[1:],
            states[0],
            float(guidance),
            lambda latents: decode(vae, latents, scaling_factor),
        )

    return for_prompts
