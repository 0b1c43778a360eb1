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

from stepattr.core.diffusion import resolve_device
from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import load_json, save_csv, save_json, save_npz, save_text
from stepattr.lds import baselines
from stepattr.lds.ground_truth import (
    load_subset_outputs,
    load_subset_outputs_by_seed,
    subset_model_outputs,
)
from stepattr.lds.metric import LdsSettings, select_lambda
from stepattr.lds.tables import (
    CEILING,
    CEILING_NOTE,
    ceiling_rows,
    dtrak_lds_rows,
    ground_truth_comparison,
    lds_header,
    lds_markdown,
    paired_lds_rows,
    paired_markdown,
    plot_lds,
    step_lds_rows,
    tuning_curves,
)
from stepattr.targets.sets import TargetSets, load_target_sets, prompt_states
from stepattr.training.subsets import load_masks
from stepattr.trak.scores import trak_scores_multi
from stepattr.trak.storage import load_method_features, load_scores, load_whole_loss, save_scores


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


HeldOut = tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]  # masks, f, whole loss, rows


def select_lambda_job(
    lambdas: Sequence[float],
    feature_paths: tuple[
        Sequence[str | os.PathLike], Sequence[str | os.PathLike], Sequence[str | os.PathLike]
    ],
    subset_paths: tuple[str | os.PathLike, Sequence[str | os.PathLike]],
    heldout_models: Sequence[str],
) -> dict[str, Any]:
    """The ``lambda.json`` record of rule select_lambda, from its input files.

    ``feature_paths`` (train files, model-major target files, model-major whole-loss target
    files) are read checked and memory-mapped by
    :func:`stepattr.trak.storage.load_method_features`; ``subset_paths`` are the subset matrix
    and the held-out subset models' outputs (:mod:`stepattr.lds.ground_truth`).
    """
    train_paths, target_paths, whole_paths = feature_paths
    train, target, _ = load_method_features(train_paths, target_paths)
    _, whole_target, _ = load_method_features(train_paths, whole_paths)
    heldout = heldout_data(*subset_paths, heldout_models)
    return choose_lambda(lambdas, train, target, whole_target, heldout)


def choose_lambda(
    lambdas: Sequence[float],
    train_features: Sequence[np.ndarray],
    target_features: Sequence[np.ndarray],
    whole_loss_features: Sequence[np.ndarray],
    heldout: HeldOut,
) -> dict[str, Any]:
    """The ``lambda.json`` record: per protocol, the lambda with the best held-out LDS
    (:func:`heldout_choices`). Target features are (m, G, k), whole-loss ones (m, 1, k)."""
    lams = [float(lam) for lam in lambdas]
    step = trak_scores_multi(list(train_features), list(target_features), lams)
    whole = trak_scores_multi(list(train_features), list(whole_loss_features), lams)[:, :, 0]
    return heldout_choices(
        "lambda", "attribution.lambdas", lams, lambda lam: step[lams.index(lam)],
        lambda lam: whole[lams.index(lam)], heldout,
    )  # fmt: skip


def heldout_choices(
    key: str,
    config_key: str,
    values: Sequence[float],
    step_scores: Callable[[float], np.ndarray],
    whole_loss_scores: Callable[[float], np.ndarray],
    heldout: HeldOut,
) -> dict[str, Any]:
    """A tuning choice made once per protocol, each on its own held-out LDS: the per-step
    record at the top level, D-TRAK's whole-loss record under ``whole_loss`` (the two protocols
    peak at different values, and the scored subsets never choose either).

    ``step_scores(value)`` is (m, G, n), ``whole_loss_scores(value)`` (m, n); ``heldout`` is
    :func:`heldout_data`'s masks, f_t (m, G, M), whole losses (m, M) and rows.
    """
    masks, losses, whole, rows = heldout
    record = heldout_choice(key, config_key, values, step_scores, masks, losses, rows)
    record["whole_loss"] = heldout_choice(
        key, config_key, values, lambda value: whole_loss_scores(value)[:, None], masks,
        whole[:, None], rows, "D-TRAK's whole loss (one column)",
    )  # fmt: skip
    return record


def heldout_choice(
    key: str,
    config_key: str,
    values: Sequence[float],
    scores_for: Callable[[float], np.ndarray],
    masks: np.ndarray,
    losses: np.ndarray,
    rows: Sequence[int],
    protocol: str = "f_t per grid step",
) -> dict[str, Any]:
    """The record of a tuning choice (TRAK's lambda, influence's damping): the value of
    ``config_key`` whose scores ``scores_for(value)`` (m, G, n) give the best mean LDS over
    steps on the held-out subsets (``masks``, ``losses`` (m, G, M), subset ``rows``)."""
    chosen, per_value = select_lambda(list(values), scores_for, masks, losses)
    edge = grid_edge(chosen, list(values))
    if edge:
        print(
            f"WARNING: {key} {chosen:g} ({protocol}) is the {edge} value offered "
            f"({config_key}); the best value may lie beyond the grid: widen it"
        )
    return {
        key: chosen,
        "grid_edge": edge,
        "criterion": f"held-out LDS of {protocol}: Spearman(masks @ scores, -output) per "
        f"target, mean over targets, then over steps; ties go to the smaller {key}",
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
    """The record when there are no held-out subsets (subsets.heldout = 0): the first value,
    for both protocols."""
    record = {
        key: float(values[0]),
        "criterion": f"none: subsets.heldout = 0, so {config_key}[0] is used unchosen",
        "grid_edge": None,
        "heldout_lds": [],
        "heldout_rows": [],
    }
    return {**record, "whole_loss": dict(record)}


def heldout_data(
    masks_path: str | os.PathLike,
    output_paths: Sequence[str | os.PathLike],
    heldout_models: Sequence[str],
) -> HeldOut:
    """The held-out subsets' masks, f_t (m, G, M), whole losses (m, M) and rows: all a tuning
    choice may read."""
    rows, losses, whole = load_subset_outputs(output_paths, heldout_models)
    return load_masks(masks_path, rows), losses, whole, list(rows)


def baseline_scores(
    name: str,
    targets: TargetSets,
    train_split: str | os.PathLike,
    seed: int,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    feature_paths: tuple[
        Sequence[str | os.PathLike], Sequence[str | os.PathLike], Sequence[str | os.PathLike]
    ]
    | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (m, G, n_train) of one baseline of :mod:`stepattr.lds.baselines`, and its
    whole-loss scores (m, n_train): the same baseline on the final image x_0.

    graddot reads ``feature_paths`` (train files, model-major target files, model-major
    whole-loss target files) through :func:`stepattr.trak.storage.load_method_features`:
    checked and memory-mapped.
    """
    images, _, _ = load_split(train_split)
    features = whole_features = None
    if feature_paths is not None:
        train_paths, target_paths, whole_paths = feature_paths
        features = load_method_features(train_paths, target_paths)[:2]
        whole_features = load_method_features(train_paths, whole_paths)[:2]
    train_images = to_model_space(images).numpy()
    scores = baselines.compute(name, targets.image_x0hat, train_images, seed, embed, features)
    final = targets.image_x0[:, None]
    whole = baselines.compute(name, final, train_images, seed, embed, whole_features)[:, 0]
    return scores, whole


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
    f_fresh: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Per-step, D-TRAK-protocol, paired and fresh-noise LDS rows of every method, and each
    row label.

    ``masks`` are the scored subsets' rows, ``f`` (m, G, M) and ``dtrak`` (m, M) their outputs;
    each method's D-TRAK-protocol rows read its ``whole_loss.npy``.
    The paired rows are each other method's per-step LDS minus that of ``reference`` (none
    where it is None or not among the methods). The fresh-noise rows are the per-step LDS
    against ``f_fresh`` (m, G, M) (none where it is None).
    """
    steps, whole, paired, fresh, labels = [], [], [], [], {}
    scores_of = {}
    for method, directory in score_dirs.items():
        scores, meta = load_method_scores(directory, targets)
        scores_of[method] = scores
        labels[method] = method_label(method, meta)
        for truth, rows in ((f, steps), (f_fresh, fresh)):
            if truth is not None:
                rows += step_lds_rows(
                    method, scores, masks, truth, targets.grid, targets.target_set,
                    n_boot, seed, level,
                )  # fmt: skip
        whole_loss = load_whole_loss(Path(directory) / "whole_loss.npy", scores)
        whole += dtrak_lds_rows(
            method, whole_loss, masks, dtrak, targets.target_set, n_boot, seed, level
        )
    if reference in scores_of:
        for method, scores in scores_of.items():
            if method != reference:
                paired += paired_lds_rows(
                    method, reference, scores, scores_of[reference], masks, f, targets.grid,
                    targets.target_set, n_boot, seed, level,
                )  # fmt: skip
    frames = (pd.DataFrame(rows) for rows in (steps, whole, paired, fresh))
    return *frames, labels


def run_baseline_scores(smk: Any) -> None:
    """Rules baseline_scores, embedding_scores: a baseline's scores (TRAK format), index, meta."""
    torch.set_num_threads(smk.threads)
    name = smk.wildcards.get("baseline", "embedding")
    targets = load_target_sets(smk.input.targets, smk.params.target_sets)
    meta = {"method": name, "grid": targets.grid, "lambda": None, **smk.params.provenance}
    embed = feature_paths = None
    if name == "random":
        meta["seed"] = smk.params.seed
    if name == "embedding":
        classifier_dir = Path(smk.input.classifier[0]).parent
        _, _, class_names = load_split(smk.input.train)
        device = resolve_device(smk.params.device)
        embed, meta["embedder"] = image_embedder(
            smk.params.clip, classifier_dir, class_names, device
        )
        meta["models"] = [str(classifier_dir)]
    if name == "graddot":
        feature_paths = (
            smk.input.train_features,
            smk.input.target_features,
            smk.input.whole_loss_features,
        )
        meta["models"] = smk.params.models
        meta["features"] = list(smk.input.train_features)
    scores, whole_loss = baseline_scores(
        name, targets, smk.input.train, smk.params.seed, embed, feature_paths
    )
    print(f"{name}: scores {scores.shape}, mean {scores.mean():.4g}, std {scores.std():.4g}")
    save_scores(dict(smk.output.items()), scores, targets.index(), meta, whole_loss)


def run_eval_subset_outputs(smk: Any) -> None:
    """Rule eval_subset_outputs: a subset model's f_t at every grid step and D-TRAK loss per
    target."""
    torch.set_num_threads(smk.threads)
    targets = load_target_sets(smk.input.targets, smk.params.target_sets)
    outputs = subset_model_outputs(
        Path(smk.input.model).parent,
        targets,
        resamples=smk.params.resamples,
        seed=smk.params.seed,
        dtrak_draws=smk.params.dtrak_draws,
        lds_seed=smk.params.lds_seed,
        batch_size=smk.params.batch_size,
        device=resolve_device(smk.params.device),
        states=prompt_states(targets, smk.input.get("text_states")),
    )
    print(
        f"{smk.wildcards.model_id}: f {outputs['f'].shape}, mean {outputs['f'].mean():.5f} "
        f"(fresh noise {outputs['f_fresh'].mean():.5f}); dtrak mean {outputs['dtrak'].mean():.5f}"
    )
    save_npz(smk.output[0], **outputs)


def run_lds_figure(smk: Any) -> None:
    """Rule lds_figure: LDS against denoising step, one line per method, CI bands."""
    frame = pd.read_csv(smk.input[0])
    labels = dict(zip(frame["method"], frame["label"], strict=False))
    files = ", ".join(smk.params.provenance["config_files"])
    sub = smk.params.subsets
    title = (
        f"LDS per step ({files}; {sub['count']} subsets x {sub['seeds']} model(s), "
        f"95% bootstrap CI over subsets and targets)"
    )
    plot_lds(frame, smk.output[0], labels, title)


def run_lds_tables(smk: Any) -> None:
    """Rule lds: per-step and D-TRAK-protocol LDS tables of every method (CSV + Markdown)."""
    targets = load_target_sets(smk.input.targets, smk.params.target_sets)
    rows, f_by_seed, dtrak_by_seed = load_subset_outputs_by_seed(
        smk.input.outputs, smk.params.scored_models, targets.target_id
    )
    _, fresh_by_seed, _ = load_subset_outputs_by_seed(
        smk.input.outputs, smk.params.scored_models, targets.target_id, "f_fresh"
    )
    # a subset's truth: its seeds' mean
    f, f_fresh, dtrak = (x.mean(axis=-1) for x in (f_by_seed, fresh_by_seed, dtrak_by_seed))
    masks = load_masks(smk.input.masks, rows)
    cfg = LdsSettings.from_config(smk.params.lds)
    score_dirs = {
        Path(p).parent.name: Path(p).parent
        for p in smk.input.scores
        if Path(p).name == "scores.npy"
    }
    boot = (cfg.bootstrap, cfg.seed, cfg.ci_level)
    steps, whole, paired, fresh, labels = lds_frames(
        score_dirs, targets, masks, f, dtrak, *boot, smk.params.reference, f_fresh
    )
    ceiling_steps, ceiling_whole = ceiling_rows(
        f_by_seed, dtrak_by_seed, targets.grid, targets.target_set, *boot
    )
    n_seeds = f_by_seed.shape[-1]
    if ceiling_steps:
        labels[CEILING] = f"retraining ceiling (1 seed vs the other {n_seeds - 1})"
        ceiling_fresh, _ = ceiling_rows(
            fresh_by_seed, None, targets.grid, targets.target_set, *boot
        )
        steps = pd.concat([pd.DataFrame(ceiling_steps), steps], ignore_index=True)
        fresh = pd.concat([pd.DataFrame(ceiling_fresh), fresh], ignore_index=True)
        whole = pd.concat([pd.DataFrame(ceiling_whole), whole], ignore_index=True)
    lambdas, records = {}, {}
    for method, directory in score_dirs.items():
        meta = load_json(f"{directory}/meta.json")
        for key, unit in (("lambda", ""), ("damping", " x mean eigenvalue")):
            if meta.get(key) is not None:
                lambdas[method] = tuning_label(key, unit, meta[f"{key}_record"])
                records[method] = (key, meta[f"{key}_record"])
    header = lds_header(
        smk.params.provenance,
        smk.params.seeds,
        smk.params.subsets,
        cfg,
        smk.params.resamples,
        {name: int((targets.target_set == name).sum()) for name in smk.params.target_sets},
        lambdas,
        [
            smk.input.masks,
            f"{len(smk.input.outputs)} files like {smk.input.outputs[0]}",
            f"{Path(smk.input.scores[0]).parent.parent}/<method>/scores.npy",
        ],
    )
    if ceiling_steps:
        header.append(CEILING_NOTE)
    for frame in (steps, whole, paired, fresh):
        frame.insert(1, "label", frame["method"].map(labels))
    print(steps.to_string())
    print(whole.to_string())
    save_csv(smk.output.csv, steps)
    save_csv(smk.output.fresh_csv, fresh)
    save_csv(smk.output.dtrak_csv, whole)
    save_text(
        smk.output.md,
        lds_markdown(steps, "LDS per denoising step", header, labels, n_seeds)
        + "\n".join(ground_truth_comparison(steps, fresh, labels) + tuning_curves(records)),
    )
    dtrak_header = header + [
        "- D-TRAK protocol: ground truth = diffusion loss of the final image averaged over "
        "timesteps; prediction = each method's whole-loss scores (its features, or images, of "
        "the final image at the grid's timesteps, averaged), with its own held-out lambda or "
        "damping"
    ]
    save_csv(smk.output.paired_csv, paired)
    save_text(smk.output.paired_md, paired_markdown(paired, header, labels))
    save_text(
        smk.output.dtrak_md,
        lds_markdown(whole, "LDS, D-TRAK protocol", dtrak_header, labels, n_seeds),
    )


def tuning_label(key: str, unit: str, record: Mapping[str, Any]) -> str:
    """A method's lambda or damping for the table header: per step, then the whole loss's,
    each flagged where it sits on an end of the grid."""

    def value(choice: Mapping[str, Any]) -> str:
        edge = choice.get("grid_edge")
        return f"{choice[key]:g}{unit}" + (f" ({edge} of the grid)" if edge else "")

    return f"{key} {value(record)} (whole loss: {value(record['whole_loss'])})"


def run_select_lambda(smk: Any) -> None:
    """Rule select_lambda: the TRAK lambda with the best mean LDS over steps on held-out subsets."""
    lambdas = [float(lam) for lam in smk.params.lambdas]
    if not smk.params.heldout_models:
        record = default_choice("lambda", "attribution.lambdas", lambdas)
    else:
        record = select_lambda_job(
            lambdas,
            (smk.input.train_features, smk.input.target_features, smk.input.whole_loss_features),
            (smk.input.masks, smk.input.outputs),
            smk.params.heldout_models,
        )
    print(record)
    save_json(smk.output[0], {"method": smk.wildcards.method, **record})
