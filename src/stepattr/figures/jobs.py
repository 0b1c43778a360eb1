"""The figure rules' jobs: files in, files out (the scripts under scripts/ call these).

Scores are read through :func:`stepattr.trak.storage.load_scores` (rows =
generated targets, then validation; ``index.csv`` maps a row to its target set and id). Patch
features reuse the trak family's featurizer (:func:`stepattr.trak.jobs.load_featurizer`) so they
share the model, the projection and the sidecar identity with the train features, which
:func:`stepattr.trak.storage.load_method_features` checks before scoring.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from stepattr.core.images import load_captions, load_split
from stepattr.core.io import atomic_path, load_json
from stepattr.core.provenance import describe_config
from stepattr.figures.influencers import (
    TrainingImages,
    Trajectory,
    animation_frame,
    influencer_figure,
    save_animation,
    step_influencers,
)
from stepattr.figures.patch_figure import WHOLE_IMAGE, PatchRow, patch_figure
from stepattr.figures.patches import FiguresSettings, configured_patches, patch_target_features
from stepattr.targets.generate import check_targets
from stepattr.targets.sets import load_target_sets
from stepattr.trak.features import AttributionSettings
from stepattr.trak.jobs import load_featurizer
from stepattr.trak.scores import trak_scores
from stepattr.trak.storage import (
    load_method_features,
    load_scores,
    save_features,
    save_scores,
    score_row,
)
from stepattr.transitions.feature_attribution import top_influencers

log = logging.getLogger(__name__)

DPI = 110


def load_training_images(path: str | os.PathLike) -> TrainingImages:
    """The training split, with its captions where it has some."""
    images, labels, class_names = load_split(path)
    with np.load(path, allow_pickle=False) as data:
        captioned = "captions" in data.files
    return TrainingImages(images, labels, class_names, load_captions(path) if captioned else None)


def load_trajectories(
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    target_ids: Sequence[int],
    class_names: Sequence[str],
) -> dict[int, Trajectory]:
    """The trajectories of ``target_ids`` (global ids), named after their set (and, for
    validation targets, their test image and label; for prompted targets, their prompt), as
    images: the decoded latents of the text-to-image family."""
    wanted, found = {int(t) for t in target_ids}, {}
    for path, name in zip(target_files, target_sets, strict=True):
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        check_targets(arrays, str(path))
        for i, tid in enumerate(arrays["target_id"].tolist()):
            if tid not in wanted:
                continue
            title = f"{name} target {tid}"
            if arrays["source_index"][i] >= 0:
                label = class_names[int(arrays["label"][i])]
                title += f" (test image #{int(arrays['source_index'][i])}, label {label})"
            prefix = "decoded_" if "prompt" in arrays else ""
            if prefix:
                title += f': "{arrays["prompt"][i]}"'
            found[tid] = Trajectory(
                title,
                arrays[f"{prefix}x0"][i],
                arrays[f"{prefix}x_t"][i],
                arrays[f"{prefix}x0hat"][i],
                tuple(int(s) for s in arrays["grid"]),
            )
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"target ids {missing} are in none of {list(map(str, target_files))}")
    return found


def method_heading(meta: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    """What produced the scores: method, lambda, ensemble size and the config files."""
    return (
        f"{meta['method']} scores (lambda {float(meta['lambda']):g}, "
        f"{len(meta.get('models', []))} model(s)); config {describe_config(provenance)}"
    )


def _save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)


def _check_grid(target: Trajectory, grid: Sequence[int], where: str) -> None:
    if list(target.grid) != list(grid):
        raise ValueError(
            f"{where}: grid {list(grid)} differs from the targets' {list(target.grid)}"
        )


def influencer_job(
    scores: Mapping[str, str],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    train_path: str | os.PathLike,
    target_set: str,
    target_id: int,
    top_k: int,
    frame_ms: int,
    png: str | os.PathLike,
    gif: str | os.PathLike,
    provenance: Mapping[str, Any],
) -> None:
    """One target's influencer figure (PNG) and its animation across steps (GIF).

    ``scores`` maps ``scores``, ``index`` and ``meta`` to the method's files.
    """
    values, index, grid, meta = load_scores(scores["scores"], scores["index"], scores["meta"])
    train = load_training_images(train_path)
    target = load_trajectories(target_files, target_sets, [target_id], train.class_names)[target_id]
    _check_grid(target, grid, scores["meta"])
    steps = step_influencers(
        np.asarray(values[score_row(index, target_id, target_set)]), grid, top_k
    )
    heading = f"Top-{top_k} influencers per denoising step. " + method_heading(meta, provenance)
    _save_figure(influencer_figure([(target, steps)], train, heading), png)
    frames = [
        animation_frame(target, g, step, train, method_heading(meta, provenance))
        for g, step in enumerate(steps)
    ]
    save_animation(gif, frames, frame_ms)


def overview_job(
    scores: Mapping[str, str],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    train_path: str | os.PathLike,
    target_ids: Sequence[int],
    top_k: int,
    png: str | os.PathLike,
    provenance: Mapping[str, Any],
) -> None:
    """The overview: the influencer blocks of a few targets in one figure."""
    values, index, grid, meta = load_scores(scores["scores"], scores["index"], scores["meta"])
    train = load_training_images(train_path)
    targets = load_trajectories(target_files, target_sets, target_ids, train.class_names)
    blocks = []
    for tid in target_ids:
        _check_grid(targets[tid], grid, scores["meta"])
        row = np.asarray(values[score_row(index, tid)])
        blocks.append((targets[tid], step_influencers(row, grid, top_k)))
    heading = f"Top-{top_k} influencers per denoising step. " + method_heading(meta, provenance)
    _save_figure(influencer_figure(blocks, train, heading), png)


def _patch_targets(
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    figures: FiguresSettings,
):
    """The patch targets' rows of the concatenated target sets, and the patch steps' columns."""
    targets = load_target_sets(target_files, target_sets)
    rows = [int(np.flatnonzero(targets.target_id == tid)[0]) for tid in figures.patch_targets]
    grid = targets.grid.tolist()
    cols = [grid.index(step) for step in figures.patch_steps]
    return targets, rows, cols


def patch_features_job(
    model_dir: str | os.PathLike,
    model_id: str,
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    out_path: str | os.PathLike,
    output_function: str,
    projector: str,
    attribution: AttributionSettings,
    figures: FiguresSettings,
    device: str,
) -> None:
    """Masked target features ``(targets x patches, steps, k)`` of one model (target-major)."""
    featurizer, _, info = load_featurizer(
        model_dir, model_id, output_function, projector, attribution, device
    )
    targets, rows, cols = _patch_targets(target_files, target_sets, figures)
    size = targets.x0.shape[-1]
    patches = configured_patches(figures, size)
    x0hat = torch.from_numpy(np.ascontiguousarray(targets.x0hat[rows][:, cols]))
    log.info(
        "patch features: %d targets x %d patches x %d steps", len(rows), len(patches), len(cols)
    )
    feats = patch_target_features(
        featurizer,
        x0hat,
        targets.target_id[rows].tolist(),
        list(figures.patch_steps),
        patches,
        attribution.target_resamples,
        attribution.seed,
        attribution.batch_size,
    )
    info.update(
        side="target",
        target_set="patches",
        draws=attribution.target_resamples,
        grid=list(figures.patch_steps),
        target_ids=targets.target_id[rows].tolist(),
        patches=[{"name": p.name, "box": list(p.box)} for p in patches],
    )
    save_features(
        out_path,
        feats.reshape(-1, *feats.shape[2:]),
        attribution.feature_dtype,
        info,
    )


def _load_lambda(path: str | os.PathLike) -> tuple[float, dict[str, Any]]:
    record = load_json(path)
    if not isinstance(record, dict) or "lambda" not in record:
        raise ValueError(f"{path}: expected a JSON object with key 'lambda'")
    return float(record["lambda"]), record


def patch_scores_job(
    method: str,
    models: Sequence[str],
    train_paths: Sequence[str | os.PathLike],
    patch_paths: Sequence[str | os.PathLike],
    lambda_path: str | os.PathLike,
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    figures: FiguresSettings,
    outputs: Mapping[str, str | os.PathLike],
    provenance: Mapping[str, Any],
) -> None:
    """Patch scores ``(targets x patches, steps, n_train)`` with the method's lambda, their
    ``index.csv`` (row, target, patch, box) and ``meta.json``."""
    if len(train_paths) != len(models) or len(patch_paths) != len(models):
        raise ValueError(
            f"{len(train_paths)} train and {len(patch_paths)} patch feature files "
            f"for {len(models)} models"
        )
    lam, record = _load_lambda(lambda_path)
    train, target, identities = load_method_features(train_paths, patch_paths)
    targets, rows, _ = _patch_targets(target_files, target_sets, figures)
    patches = configured_patches(figures, targets.x0.shape[-1])
    if target[0].shape[:2] != (len(rows) * len(patches), len(figures.patch_steps)):
        raise ValueError(
            f"{patch_paths[0]}: features {target[0].shape} do not match "
            f"{len(rows)} targets x {len(patches)} patches x {list(figures.patch_steps)}"
        )
    scores = trak_scores(train, target, lam)
    index = pd.DataFrame(
        [
            {
                "target_set": targets.target_set[r],
                "target_id": int(targets.target_id[r]),
                "patch": p.name,
                "x0": p.box[0],
                "y0": p.box[1],
                "x1": p.box[2],
                "y1": p.box[3],
            }
            for r in rows
            for p in patches
        ]
    )
    index.insert(0, "row", np.arange(len(index)))
    save_scores(
        outputs,
        scores,
        index,
        {
            "method": method,
            "sign": "positive = including the training example lowers the patch's f_t",
            "steps": list(figures.patch_steps),
            "lambda": lam,
            "lambda_record": record,
            "models": [
                {"model_id": m, **ident} for m, ident in zip(models, identities, strict=True)
            ],
            "shape": list(scores.shape),
            **dict(provenance),
        },
    )


def patch_figure_job(
    patch_scores: Mapping[str, str],
    scores: Mapping[str, str],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    train_path: str | os.PathLike,
    top_k: int,
    png: str | os.PathLike,
    provenance: Mapping[str, Any],
) -> None:
    """The patch figure: per patch target, the whole image's and each patch's top influencers."""
    patch_values = np.load(patch_scores["scores"], mmap_mode="r")
    patch_index = pd.read_csv(patch_scores["index"])
    patch_meta = load_json(patch_scores["meta"])
    values, index, grid, _ = load_scores(scores["scores"], scores["index"], scores["meta"])
    steps = [int(s) for s in patch_meta["steps"]]
    cols = [grid.index(s) for s in steps]
    train = load_training_images(train_path)
    ids = list(dict.fromkeys(patch_index["target_id"].tolist()))
    targets = load_trajectories(target_files, target_sets, ids, train.class_names)
    blocks = []
    for tid in ids:
        whole = np.asarray(values[score_row(index, tid)])[cols]
        rows = [PatchRow(WHOLE_IMAGE, None, [top_influencers(s, top_k)[0] for s in whole])]
        for rec in patch_index[patch_index["target_id"] == tid].itertuples():
            rows.append(
                PatchRow(
                    rec.patch,
                    (rec.x0, rec.y0, rec.x1, rec.y1),
                    [top_influencers(s, top_k)[0] for s in np.asarray(patch_values[rec.row])],
                )
            )
        full = targets[tid]
        shown = Trajectory(full.name, full.x0, full.x_t[cols], full.x0hat[cols], tuple(steps))
        blocks.append((shown, rows))
    heading = (
        f"Patch attribution: top-{top_k} positive influencers of f_t restricted to each patch "
        "(mask on the residual, same noises and lambda as the whole image). "
        + method_heading(patch_meta, provenance)
    )
    _save_figure(patch_figure(blocks, train, heading), png)


# ----------------------------------------------------------------------------- rule entry points


def run_patch_features(smk: Any) -> None:
    """Rule patch_features: masked target features of the patch targets for one model."""
    torch.set_num_threads(smk.threads)
    patch_features_job(
        model_dir=Path(smk.input.model).parent,
        model_id=smk.wildcards.model_id,
        target_files=smk.input.targets,
        target_sets=smk.params.target_sets,
        out_path=smk.output.features,
        output_function=smk.params.output_function,
        projector=smk.params.projector,
        attribution=AttributionSettings.from_config(smk.params.attribution),
        figures=FiguresSettings.from_config(smk.params.figures),
        device=smk.params.device,
    )


def run_patch_scores(smk: Any) -> None:
    """Rule patch_scores: TRAK scores of the patch features with the method's lambda."""
    patch_scores_job(
        method=smk.params.method,
        models=smk.params.models,
        train_paths=smk.input.train_features,
        patch_paths=smk.input.patch_features,
        lambda_path=smk.input.lam,
        target_files=smk.input.targets,
        target_sets=smk.params.target_sets,
        figures=FiguresSettings.from_config(smk.params.figures),
        outputs={"scores": smk.output.scores, "index": smk.output.index, "meta": smk.output.meta},
        provenance=dict(smk.params.provenance),
    )
