"""File-level steps of the LDS rules: features to lambda, inputs to baselines, scores to tables.

The rule scripts call these with the paths Snakemake hands them; the numerics live in
:mod:`stepattr.lds.metric`, :mod:`stepattr.lds.baselines` and :mod:`stepattr.lds.tables`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr.core.images import load_split, to_model_space
from stepattr.lds import baselines
from stepattr.lds.ground_truth import load_subset_outputs
from stepattr.lds.metric import select_lambda
from stepattr.lds.tables import dtrak_lds_rows, paired_lds_rows, step_lds_rows
from stepattr.targets.sets import TargetSets
from stepattr.training.subsets import load_masks
from stepattr.trak.scores import trak_scores_multi
from stepattr.trak.storage import load_method_features, load_scores


def image_embedder(
    clip_cfg: Mapping[str, Any],
    classifier_dir: str | os.PathLike,
    class_names: Sequence[str],
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The embedding baseline's image embedding and its name.

    CLIP's image tower where ``clip.weights`` load; otherwise (no weights, or not cached) the
    workflow classifier's penultimate layer. The name says which, for the tables.
    """
    from stepattr.detectors.classifier import embed, load_classifier

    if clip_cfg.get("weights") is not None:
        from stepattr.detectors.clip import ClipUnavailable, load_clip

        try:
            clip = load_clip(clip_cfg, class_names, device=device)
        except ClipUnavailable as err:
            print(f"CLIP unavailable ({err}); embedding with the workflow classifier")
        else:

            @torch.no_grad()
            def clip_embed(images: np.ndarray) -> np.ndarray:
                out = [
                    clip.model.encode_image(
                        clip.preprocess(torch.from_numpy(images[i : i + batch_size]).to(device))
                    )
                    for i in range(0, len(images), batch_size)
                ]
                return torch.cat(out).float().cpu().numpy()

            return clip_embed, f"CLIP image embedding, {clip.name}"
    model = load_classifier(classifier_dir, device)
    return (lambda images: embed(model, images)), "classifier penultimate layer"


def select_lambda_job(
    lambdas: Sequence[float],
    feature_paths: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]],
    subset_paths: tuple[str | os.PathLike, Sequence[str | os.PathLike]],
    heldout_models: Sequence[str],
) -> dict[str, Any]:
    """The ``lambda.json`` record of rule select_lambda, from its input files.

    ``feature_paths`` (train files, model-major target files) are read checked and
    memory-mapped by :func:`stepattr.trak.storage.load_method_features`; ``subset_paths`` are
    the subset matrix and the held-out subset models' outputs (:mod:`stepattr.lds.ground_truth`).
    """
    train, target, _ = load_method_features(*feature_paths)
    masks, losses, rows = heldout_data(*subset_paths, heldout_models)
    return choose_lambda(lambdas, train, target, masks, losses, rows)


def choose_lambda(
    lambdas: Sequence[float],
    train_features: Sequence[np.ndarray],
    target_features: Sequence[np.ndarray],
    masks: np.ndarray,
    losses: np.ndarray,
    rows: Sequence[int],
) -> dict[str, Any]:
    """The ``lambda.json`` record: lambda with the best held-out mean LDS over steps.

    ``masks`` are the held-out rows of the subset matrix, ``losses`` (m, G, M) their outputs.
    """
    lams = [float(lam) for lam in lambdas]
    all_scores = trak_scores_multi(list(train_features), list(target_features), lams)
    return heldout_choice(
        "lambda", "attribution.lambdas", lams, lambda lam: all_scores[lams.index(lam)],
        masks, losses, rows,
    )  # fmt: skip


def heldout_choice(
    key: str,
    config_key: str,
    values: Sequence[float],
    scores_for: Callable[[float], np.ndarray],
    masks: np.ndarray,
    losses: np.ndarray,
    rows: Sequence[int],
) -> dict[str, Any]:
    """The record of a tuning choice (TRAK's lambda, influence's damping): the value of
    ``config_key`` whose scores ``scores_for(value)`` (m, G, n) give the best mean LDS over
    steps on the held-out subsets (``masks``, ``losses`` (m, G, M), subset ``rows``)."""
    chosen, per_value = select_lambda(list(values), scores_for, masks, losses)
    edge = grid_edge(chosen, list(values))
    if edge:
        print(
            f"WARNING: {key} {chosen:g} is the {edge} value offered ({config_key}); "
            "the best value may lie beyond the grid: widen it"
        )
    return {
        key: chosen,
        "grid_edge": edge,
        "criterion": "held-out LDS: Spearman(masks @ scores, -f_t) per target, mean over "
        f"targets, then over grid steps; ties go to the smaller {key}",
        "heldout_lds": [{key: value, "lds": lds} for value, lds in per_value.items()],
        "heldout_rows": [int(r) for r in rows],
    }


def grid_edge(chosen: float, lambdas: Sequence[float]) -> str | None:
    """'smallest' or 'largest' where the choice sits on an end of a grid of 3+ values."""
    if len(lambdas) < 3:
        return None
    if chosen == min(lambdas):
        return "smallest"
    return "largest" if chosen == max(lambdas) else None


def default_choice(key: str, config_key: str, values: Sequence[float]) -> dict[str, Any]:
    """The record when there are no held-out subsets (subsets.heldout = 0): the first value."""
    return {
        key: float(values[0]),
        "criterion": f"none: subsets.heldout = 0, so {config_key}[0] is used unchosen",
        "grid_edge": None,
        "heldout_lds": [],
        "heldout_rows": [],
    }


def heldout_data(
    masks_path: str | os.PathLike,
    output_paths: Sequence[str | os.PathLike],
    heldout_models: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The held-out subsets' masks, f_t (m, G, M) and rows: all a tuning choice may read."""
    rows, losses, _ = load_subset_outputs(output_paths, heldout_models)
    return load_masks(masks_path, rows), losses, list(rows)


def baseline_scores(
    name: str,
    targets: TargetSets,
    train_split: str | os.PathLike,
    seed: int,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    feature_paths: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]] | None = None,
) -> np.ndarray:
    """Scores (m, G, n_train) of one baseline of :mod:`stepattr.lds.baselines`.

    graddot reads ``feature_paths`` (train files, model-major target files) through
    :func:`stepattr.trak.storage.load_method_features`: checked and memory-mapped.
    """
    images, _, _ = load_split(train_split)
    features = load_method_features(*feature_paths)[:2] if feature_paths is not None else None
    train_images = to_model_space(images).numpy()
    return baselines.compute(name, targets.image_x0hat, train_images, seed, embed, features)


def load_method_scores(
    directory: str | os.PathLike, targets: TargetSets
) -> tuple[np.ndarray, dict[str, Any]]:
    """A method's scores (memory-mapped, :func:`stepattr.trak.storage.load_scores`) and meta,
    checked against the current targets."""
    directory = Path(directory)
    scores, index, _, meta = load_scores(
        directory / "scores.npy", directory / "index.csv", directory / "meta.json"
    )
    if not np.array_equal(index["target_id"].to_numpy(), targets.target_id):
        raise ValueError(f"{directory / 'index.csv'}: rows are not the current targets in order")
    if scores.shape[:2] != targets.x0hat.shape[:2]:
        raise ValueError(
            f"{directory / 'scores.npy'}: shape {scores.shape} does not match the targets"
        )
    return scores, meta


def method_label(name: str, meta: Mapping[str, Any]) -> str:
    """Row label of a method: its name, with the embedder for the embedding baseline."""
    return f"{name} ({meta['embedder']})" if "embedder" in meta else name


def lds_frames(
    score_dirs: Mapping[str, str | os.PathLike],
    targets: TargetSets,
    masks: np.ndarray,
    f: np.ndarray,
    dtrak: np.ndarray,
    n_boot: int,
    seed: int,
    level: float,
    reference: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per-step, D-TRAK-protocol and paired LDS rows of every method, and each row label.

    ``masks`` are the scored subsets' rows, ``f`` (m, G, M) and ``dtrak`` (m, M) their outputs.
    The paired rows are each other method's per-step LDS minus that of ``reference`` (none
    where it is None or not among the methods).
    """
    steps, whole, paired, labels = [], [], [], {}
    scores_of = {}
    for method, directory in score_dirs.items():
        scores, meta = load_method_scores(directory, targets)
        scores_of[method] = scores
        labels[method] = method_label(method, meta)
        args = (masks, f, targets.grid, targets.target_set, n_boot, seed, level)
        steps += step_lds_rows(method, scores, *args)
        whole += dtrak_lds_rows(
            method, scores, masks, dtrak, targets.target_set, n_boot, seed, level
        )
    if reference in scores_of:
        for method, scores in scores_of.items():
            if method != reference:
                paired += paired_lds_rows(
                    method, reference, scores, scores_of[reference], masks, f, targets.grid,
                    targets.target_set, n_boot, seed, level,
                )  # fmt: skip
    return pd.DataFrame(steps), pd.DataFrame(whole), pd.DataFrame(paired), labels
