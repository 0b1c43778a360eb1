"""What a LoRA fine-tune changes in what the pipeline generates (the Stable Diffusion family).

The pipeline samples ``n`` images with its own UNet (the base) and again with full_0 (the base
plus the fine-tuned LoRA), both through diffusers' ``StableDiffusionPipeline`` and from the
same initial noises (sample i's generator is keyed by (seed, i)), so the two sets differ only by
the adapters. The family's classifier labels every sample; the table compares the label
distributions of base and fine-tuned samples with the training set's (counts, fractions with
95% Wilson intervals, and each set's total variation distance to the training distribution).
A fine-tune on a class-skewed folder should move the samples toward the skew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from stepattr.core.seeds import FINE_TUNE_EFFECT, derive_seed
from stepattr.core.settings import settings_from
from stepattr.detectors.classifier import predict_proba
from stepattr.detectors.wilson import wilson_interval


def pipeline_samples(
    pipeline: Any,
    unet: torch.nn.Module,
    prompt: str,
    n: int,
    guidance: float,
    steps: int,
    seed: int,
    batch_size: int = 50,
    progress: bool = False,
) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] sampled by ``pipeline`` with ``unet`` in place of its
    own; sample i starts from the noise of generator (seed, i) whatever the batching."""
    pipeline.unet = unet
    pipeline.set_progress_bar_config(disable=True)
    out = []
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="samples", disable=not progress, mininterval=10):
        rows = range(start, min(n, start + batch_size))
        generators = [
            torch.Generator("cpu").manual_seed(derive_seed(FINE_TUNE_EFFECT, seed, i)) for i in rows
        ]
        with torch.no_grad():
            images = pipeline(
                prompt=[prompt] * len(rows), num_inference_steps=steps, guidance_scale=guidance,
                generator=generators, output_type="pt",
            ).images  # fmt: skip
        out.append(images.float().cpu() * 2 - 1)
    return torch.cat(out).clamp(-1, 1)


def label_distribution_table(
    predicted: dict[str, np.ndarray], train_labels: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """One row per class: the training set's fraction, and per sample set (``predicted``: set
    name -> predicted labels) its count, fraction and Wilson interval; a last row, ``(TV)``,
    holds each set's total variation distance to the training distribution."""
    k = len(class_names)
    train = np.bincount(train_labels, minlength=k) / len(train_labels)
    table = pd.DataFrame({"class": list(class_names), "train_fraction": train})
    tv = {"class": "(TV distance to train)", "train_fraction": 0.0}
    for name, labels in predicted.items():
        counts = np.bincount(labels, minlength=k)
        n = int(counts.sum())
        table[f"{name}_count"] = counts
        table[f"{name}_fraction"] = counts / n
        table[f"{name}_ci_low"], table[f"{name}_ci_high"] = wilson_interval(counts, n)
        tv |= {
            f"{name}_count": n,
            f"{name}_fraction": 0.5 * float(np.abs(counts / n - train).sum()),
        }
    return pd.concat([table, pd.DataFrame([tv])], ignore_index=True)


@dataclass(frozen=True)
class EffectSettings:
    """The ``pipeline.effect`` section (config/schema.yaml), typed once where its job starts."""

    prompt: str
    samples: int
    guidance: float
    inference_steps: int
    seed: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> EffectSettings:
        return settings_from(cls, section, "pipeline.effect")


def fine_tune_effect(
    pipeline: Any,
    models: dict[str, torch.nn.Module],
    classifier: Any,
    train_labels: np.ndarray,
    effect: EffectSettings,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """The label-distribution table (see the module docstring) and each set's samples."""
    samples, predicted = {}, {}
    for name, unet in models.items():
        x = pipeline_samples(
            pipeline, unet, effect.prompt, effect.samples, effect.guidance,
            effect.inference_steps, effect.seed, progress=progress,
        )  # fmt: skip
        samples[name] = x
        predicted[name] = predict_proba(classifier, x).argmax(1)
    table = label_distribution_table(predicted, train_labels, classifier.class_names)
    return table, samples
