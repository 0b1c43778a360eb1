"""The rule entry points of stage transitions (scripts/transitions/): each reads its rule's
snakemake object once and calls the stage's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from stepattr.core.diffusion import resolve_device
from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_path, save_csv, save_text, sha256_file
from stepattr.core.names import LATENT_FAMILIES
from stepattr.core.provenance import describe_config
from stepattr.detectors.classifier import ClassifierSettings, train_and_save_classifier
from stepattr.detectors.detector import load_detector
from stepattr.latents.autoencoder import autoencoder_source, load_autoencoder, load_latents
from stepattr.targets.sets import load_target_sets
from stepattr.trak.storage import load_scores
from stepattr.transitions.curves import (
    TransitionsSettings,
    feature_curves,
    prompted_completions,
)
from stepattr.transitions.feature_attribution import (
    influencer_fractions,
    load_intervals,
    markdown_report,
    summarize,
)
from stepattr.transitions.figure import choose_targets, transitions_figure


def run_feature_attribution(smk: Any) -> None:
    """Rule feature_attribution: do the top influencers at the transition carry the feature?"""
    cfg = TransitionsSettings.from_config(smk.params.transitions)
    scores, index, grid, meta = load_scores(smk.input.scores, smk.input.index, smk.input.meta)
    intervals = load_intervals(dict(zip(smk.params.target_sets, smk.input.intervals, strict=True)))
    _, train_labels, _ = load_split(smk.input.train)
    per_target = influencer_fractions(scores, index, grid, intervals, train_labels, cfg.top_k)
    summary = summarize(per_target, intervals)
    header = {
        "config": describe_config(smk.params.provenance),
        "transitions": {
            k: getattr(cfg, k) for k in ("detector", "completions", "completion_steps", "seed")
        },
        "detector used": ", ".join(sorted(set(intervals["detector"]))),
        "scores": (
            f"{meta.get('method')} (lambda {meta.get('lambda')}, models {meta.get('models')})"
        ),
        "inputs": ", ".join(
            f"{p} (sha256 {sha256_file(p)[:12]})" for p in [smk.input.scores, *smk.input.intervals]
        ),
    }
    save_csv(smk.output.per_target, per_target)
    save_csv(smk.output.table, summary)
    save_text(smk.output.markdown, markdown_report(summary, header, cfg.top_k))
    print(summary.to_string())


def run_feature_curves(smk: Any) -> None:
    """Rule feature_curves: P(feature | x_t) per target and grid step, and steepest-rise intervals
    (the text-to-image family: latents completed under their prompts and decoded)."""
    torch.set_num_threads(smk.threads)
    device = resolve_device(smk.params.device)
    cfg = TransitionsSettings.from_config(smk.params.transitions)
    detector = load_detector(
        cfg.detector, Path(smk.input.classifier).parent, smk.params.clip, device=device
    )
    prompted = None
    if smk.params.family in LATENT_FAMILIES:
        vae = load_autoencoder(autoencoder_source(smk.input.autoencoder, smk.params.hub_id), device)
        prompted = prompted_completions(
            smk.input.text_states, vae, load_latents(smk.input.latents)[2], smk.params.guidance
        )
        print(f"completions under the targets' prompts, guidance {smk.params.guidance}")
    curves, intervals = feature_curves(
        smk.input.targets,
        Path(smk.input.model).parent,
        detector,
        cfg,
        device=device,
        progress=True,
        prompted=prompted,
    )
    save_csv(smk.output.curves, curves)
    save_csv(smk.output.intervals, intervals)
    print(
        f"{len(intervals)} targets; median transition step {intervals['transition_step'].median()}"
    )


def run_train_classifier(smk: Any) -> None:
    """Rule train_classifier: the CNN feature detector / embedding -> {OUT}/classifier/."""
    torch.set_num_threads(smk.threads)
    metrics = train_and_save_classifier(
        smk.input.train,
        smk.input.test,
        Path(smk.output.model).parent,
        ClassifierSettings.from_config(smk.params.classifier),
        device=resolve_device(smk.params.device),
    )
    print(f"held-out accuracy {metrics['test_accuracy']:.4f} on {metrics['n_test']} images")


def run_transition_figure(smk: Any) -> None:
    """Rule transition_figure: curves with the interval shaded and influencers around it."""
    sets = list(smk.params.target_sets)
    intervals = load_intervals(dict(zip(sets, smk.input.intervals, strict=True)))
    curves = pd.concat(
        [pd.read_csv(p).assign(target_set=s) for s, p in zip(sets, smk.input.curves, strict=True)]
    )
    influencers = pd.read_csv(smk.input.per_target)
    targets = load_target_sets(smk.input.targets, sets)  # x0hat_t decoded for text-to-image
    grid = targets.grid.tolist()
    x0hat = {
        (str(s), int(t)): x
        for s, t, x in zip(targets.target_set, targets.target_id, targets.image_x0hat, strict=True)
    }
    train_images, train_labels, class_names = load_split(smk.input.train)
    chosen = choose_targets(intervals, smk.params.figure_targets)
    print("targets shown:\n" + chosen.to_string())
    fig = transitions_figure(
        chosen,
        curves,
        influencers,
        x0hat,
        grid,
        to_model_space(train_images).numpy(),
        train_labels,
        class_names,
        shown=smk.params.shown,
    )
    with atomic_path(smk.output.figure) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
