"""File-level steps of the LDS rules: features to lambda, inputs to baselines, scores to tables.

The rule scripts call these with the paths Snakemake hands them; the numerics live in
:mod:`stepattr.lds`, :mod:`stepattr.baselines` and :mod:`stepattr.lds_report`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr import baselines
from stepattr.images import load_split, to_model_space
from stepattr.io import load_json
from stepattr.lds import select_lambda
from stepattr.lds_report import dtrak_lds_rows, step_lds_rows
from stepattr.target_sets import TargetSets
from stepattr.trak.scores import trak_scores_multi


def load_features(
    train_paths: Sequence[str | os.PathLike], target_paths: Sequence[str | os.PathLike]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per model: train features (n, k) and target features of all sets concatenated (m, G, k).

    ``target_paths`` is model-major: each model's target-set files, in the order of the sets.
    """
    n_models = len(train_paths)
    if not n_models or len(target_paths) % n_models:
        raise ValueError(f"{len(target_paths)} target feature files for {n_models} models")
    per_model = len(target_paths) // n_models
    train, target = [], []
    for c, train_path in enumerate(train_paths):
        phi = np.load(train_path).astype(np.float32, copy=False)
        paths = target_paths[c * per_model : (c + 1) * per_model]
        parts = [np.load(p).astype(np.float32, copy=False) for p in paths]
        for p, part in zip(paths, parts, strict=True):
            if part.ndim != 3 or part.shape[-1] != phi.shape[-1]:
                raise ValueError(
                    f"{p}: features {part.shape} do not match {train_path} {phi.shape}"
                )
        train.append(phi)
        target.append(np.concatenate(parts))
    return train, target


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
    from stepattr.classifier import embed, load_classifier

    if clip_cfg.get("weights") is not None:
        from stepattr.clip_detector import ClipUnavailable, load_clip

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
    chosen, per_lambda = select_lambda(lams, lambda lam: all_scores[lams.index(lam)], masks, losses)
    edge = grid_edge(chosen, lams)
    if edge:
        print(
            f"WARNING: lambda {chosen:g} is the {edge} value offered (attribution.lambdas); "
            "the best value may lie beyond the grid: widen it"
        )
    return {
        "lambda": chosen,
        "grid_edge": edge,
        "criterion": "held-out LDS: Spearman(masks @ scores, -f_t) per target, mean over "
        "targets, then over grid steps; ties go to the smaller lambda",
        "heldout_lds": [{"lambda": lam, "lds": value} for lam, value in per_lambda.items()],
        "heldout_rows": [int(r) for r in rows],
    }


def grid_edge(chosen: float, lambdas: Sequence[float]) -> str | None:
    """'smallest' or 'largest' where the choice sits on an end of a grid of 3+ values."""
    if len(lambdas) < 3:
        return None
    if chosen == min(lambdas):
        return "smallest"
    return "largest" if chosen == max(lambdas) else None


def default_lambda(lambdas: Sequence[float]) -> dict[str, Any]:
    """The ``lambda.json`` record when there are no held-out subsets (subsets.heldout = 0)."""
    return {
        "lambda": float(lambdas[0]),
        "criterion": "none: subsets.heldout = 0, so attribution.lambdas[0] is used unchosen",
        "grid_edge": None,
        "heldout_lds": [],
        "heldout_rows": [],
    }


def baseline_scores(
    name: str,
    targets: TargetSets,
    train_split: str | os.PathLike,
    seed: int,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    features: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> np.ndarray:
    """Scores (m, G, n_train) of one baseline of :mod:`stepattr.baselines`."""
    images, _, _ = load_split(train_split)
    m, g = targets.x0hat.shape[:2]
    if name == "random":
        return baselines.random_scores((m, g, len(images)), seed)
    if name == "pixel":
        return baselines.pixel_scores(targets.x0hat, to_model_space(images).numpy())
    if name == "embedding":
        if embed is None:
            raise ValueError("the embedding baseline needs an embedding function")
        return baselines.embedding_scores(embed, targets.x0hat, to_model_space(images).numpy())
    if name == "graddot":
        if features is None:
            raise ValueError("the graddot baseline needs TRAK features")
        scores = baselines.graddot_scores(*features)
        if scores.shape != (m, g, len(images)):
            raise ValueError(f"features give scores {scores.shape}, expected {(m, g, len(images))}")
        return scores
    raise ValueError(f"unknown baseline {name!r}; expected one of {baselines.BASELINES}")


def load_scores(directory: str | os.PathLike, targets: TargetSets) -> np.ndarray:
    """``scores.npy`` of a method (memory-mapped), checked against its index and the targets."""
    directory = Path(directory)
    scores = np.load(directory / "scores.npy", mmap_mode="r")
    index = pd.read_csv(directory / "index.csv")
    if not np.array_equal(index["target_id"].to_numpy(), targets.target_id):
        raise ValueError(f"{directory / 'index.csv'}: rows are not the current targets in order")
    if scores.shape[:2] != targets.x0hat.shape[:2]:
        raise ValueError(
            f"{directory / 'scores.npy'}: shape {scores.shape} does not match the targets"
        )
    return scores


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
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per-step and D-TRAK-protocol LDS rows of every method, and each method's row label.

    ``masks`` are the scored subsets' rows, ``f`` (m, G, M) and ``dtrak`` (m, M) their outputs.
    """
    steps, whole, labels = [], [], {}
    for method, directory in score_dirs.items():
        scores = load_scores(directory, targets)
        labels[method] = method_label(method, load_json(Path(directory) / "meta.json"))
        args = (masks, f, targets.grid, targets.target_set, n_boot, seed, level)
        steps += step_lds_rows(method, scores, *args)
        whole += dtrak_lds_rows(
            method, scores, masks, dtrak, targets.target_set, n_boot, seed, level
        )
    return pd.DataFrame(steps), pd.DataFrame(whole), labels
