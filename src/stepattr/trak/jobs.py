"""The featurize and score jobs of the workflow: files in, files out (scripts call these).

Every job takes its settings from the config's ``attribution`` section, typed once by the
rule's entry point (``run_*``, :class:`~stepattr.trak.features.AttributionSettings`): K =
``train_timesteps`` draws per training example, R = ``target_resamples`` noises per target
and step, k = ``proj_dim``, ``batch_size`` examples per batch (vmap and projection),
``draws_per_pass`` draws per vmap pass (memory), ``seed`` for the draws and,
combined with the model id, for the projection matrix (see
:func:`stepattr.trak.projectors.projection_seed`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepattr.core.diffusion import load_model, resolve_device
from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import load_json, sha256_file
from stepattr.latents.autoencoder import load_latents
from stepattr.targets.sets import load_target_sets, prompt_states
from stepattr.training.conditioning import CaptionConditioning, caption_conditioning
from stepattr.trak.features import (
    AttributionSettings,
    Featurizer,
    make_featurizer,
    shard_indices,
    target_features,
    train_features,
    whole_loss_features,
)
from stepattr.trak.projectors import auto_choice, projection_seed
from stepattr.trak.scores import trak_scores
from stepattr.trak.storage import (
    WHOLE_LOSS_VIEW,
    gather_shards,
    load_method_features,
    save_features,
    save_scores,
)

log = logging.getLogger(__name__)


def load_featurizer(
    model_dir: str | os.PathLike,
    model_id: str,
    output_function: str,
    projector: str,
    attribution: AttributionSettings,
    device: str,
) -> tuple[Featurizer, int, dict[str, Any]]:
    """A model's featurizer, the schedule length T, and the provenance of its feature files."""
    model_dir = Path(model_dir)
    model, schedule, _ = load_model(model_dir, resolve_device(device))
    seed = projection_seed(attribution.seed, model_id)
    featurizer = make_featurizer(
        model,
        output_function,
        schedule.alphas_cumprod,
        projector,
        attribution.proj_dim,
        seed,
        attribution.draws_per_pass,
        attribution.factored_expansion,
    )
    info = {
        "model_id": model_id,
        "model_sha256": sha256_file(model_dir / "model.safetensors"),
        "featurizer": featurizer.describe(),  # its "projector": the one that ran
        "projector_requested": projector,
        "draw_seed": attribution.seed,
        "device": str(next(model.parameters()).device),
    }
    if projector == "auto":  # which projector auto chose, and why (outside the identity keys)
        info["projector_choice"] = auto_choice(info["device"], attribution.proj_dim)[1]
    log.info("featurizer %s on %s", info["featurizer"], info["device"])
    return featurizer, schedule.num_train_timesteps, info


def featurize_train_shard(
    model_dir: str | os.PathLike,
    train_split: str | os.PathLike,
    out_path: str | os.PathLike,
    model_id: str,
    output_function: str,
    projector: str,
    shard: int,
    attribution: AttributionSettings,
    device: str,
    latents: str | os.PathLike | None = None,
    text_states: str | os.PathLike | None = None,
    caption_dropout: float = 0.0,
) -> None:
    """Features of shard ``shard`` of ``attribution.shards`` equal slices of the training split.

    The text-to-image family (``latents`` and ``text_states`` given): the cached latents of the
    split, each draw under one of the example's captions or, with probability
    ``caption_dropout`` (the training's), the empty text.
    """
    featurizer, num_timesteps, info = load_featurizer(
        model_dir, model_id, output_function, projector, attribution, device
    )
    examples, conditioning = training_examples(
        train_split, latents, text_states, caption_dropout, attribution.seed
    )
    rows = shard_indices(len(examples), attribution.shards, shard)
    log.info("shard %d: training examples %d..%d", shard, rows[0], rows[-1] + 1)
    feats = train_features(
        featurizer,
        examples[rows],
        rows,
        attribution.train_timesteps,
        attribution.seed,
        num_timesteps,
        attribution.batch_size,
        progress=True,
        conditioning=conditioning,
        timesteps=attribution.train_timestep_draws,
    )
    info.update(
        side="train",
        caption_dropout=None if conditioning is None else conditioning.dropout,
        draws=attribution.train_timesteps,
        shard=shard,
        rows=[int(rows[0]), int(rows[-1]) + 1],
    )
    save_features(out_path, feats, attribution.feature_dtype, info)


def training_examples(
    train_split: str | os.PathLike,
    latents: str | os.PathLike | None = None,
    text_states: str | os.PathLike | None = None,
    caption_dropout: float = 0.0,
    seed: int = 0,
) -> tuple[torch.Tensor, CaptionConditioning | None]:
    """What the UNet was trained on: the split's images in model space, or (text-to-image) its
    cached latents and their captions' conditioning (caption draws seeded by ``seed``)."""
    if latents is None:
        return to_model_space(load_split(train_split)[0]), None
    if text_states is None:
        raise ValueError(f"{latents}: latents without text states (the text-to-image family)")
    conditioning = caption_conditioning(train_split, text_states, caption_dropout, seed)
    return torch.from_numpy(load_latents(latents)[0]), conditioning


def gather_train(
    shard_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    train_split: str | os.PathLike,
) -> None:
    """Concatenate a model's train shards; they must cover the whole training split."""
    with np.load(train_split, allow_pickle=False) as data:
        num_rows = len(data["labels"])
    gather_shards(shard_paths, out_path, num_rows)


def featurize_target_set(
    model_dir: str | os.PathLike,
    targets_path: str | os.PathLike,
    target_set: str,
    out_paths: Mapping[str, str | os.PathLike],
    model_id: str,
    output_function: str,
    projector: str,
    attribution: AttributionSettings,
    device: str,
    text_states: str | os.PathLike | None = None,
) -> None:
    """Features of one target set (under each target's prompt for the text-to-image family):
    ``out_paths["features"]`` (N, G, k), f_t around x0hat at every grid step, and
    ``out_paths["whole_loss"]`` (N, 1, k), D-TRAK's whole-loss features
    (:func:`stepattr.trak.features.whole_loss_features`)."""
    featurizer, _, info = load_featurizer(
        model_dir, model_id, output_function, projector, attribution, device
    )
    targets = load_target_sets([targets_path], [target_set])
    states = prompt_states(targets, text_states)
    draws, grid = attribution.target_resamples, targets.grid.tolist()

    def features_of(rows: np.ndarray, x0hat: np.ndarray) -> np.ndarray:
        return target_features(
            featurizer, torch.from_numpy(x0hat), targets.target_id[rows], grid, draws,
            attribution.seed, attribution.batch_size, progress=True,
            states=None if states is None else states[torch.from_numpy(rows)],
        )  # fmt: skip

    feats = features_of(np.arange(len(targets.target_id)), targets.x0hat)
    final = targets.at_final_image().x0hat
    whole = whole_loss_features(features_of, targets.x0hat, final, feats)
    info.update(side="target", target_set=target_set, draws=draws, grid=grid)
    dtype = attribution.feature_dtype
    save_features(out_paths["features"], feats, dtype, info)
    save_features(out_paths["whole_loss"], whole, dtype, {**info, "view": WHOLE_LOSS_VIEW})


def score_method(
    method: str,
    models: Sequence[str],
    feature_paths: Mapping[str, Sequence[str | os.PathLike]],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    lambda_path: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
    attribution: AttributionSettings,
    provenance: Mapping[str, Any],
) -> None:
    """``scores.npy`` (targets, G, n_train), ``whole_loss.npy`` (targets, n_train), ``index.csv``
    and ``meta.json`` of one method, each protocol at its own held-out lambda.

    ``feature_paths``: ``train_features`` per model, and ``target_features`` and
    ``whole_loss_features`` model-major (model c's target-set files in ``target_sets`` order).
    """
    train_paths = feature_paths["train_features"]
    for key in ("target_features", "whole_loss_features"):
        if len(feature_paths[key]) != len(models) * len(target_sets):
            raise ValueError(
                f"{len(feature_paths[key])} {key} files for {len(models)} models and target "
                f"sets {list(target_sets)}"
            )
    if len(train_paths) != len(models):
        raise ValueError(f"{len(train_paths)} train feature files for {len(models)} models")
    record = load_json(lambda_path)
    if not isinstance(record, dict) or "lambda" not in record or "whole_loss" not in record:
        raise ValueError(f"{lambda_path}: expected a JSON object with keys 'lambda', 'whole_loss'")
    lam, whole_lam = float(record["lambda"]), float(record["whole_loss"]["lambda"])
    train, target, identities = load_method_features(train_paths, feature_paths["target_features"])
    _, whole_target, _ = load_method_features(train_paths, feature_paths["whole_loss_features"])
    targets = load_target_sets(target_files, target_sets)
    if target[0].shape[:2] != targets.x0hat.shape[:2]:
        raise ValueError(
            f"target features {target[0].shape} do not match the targets "
            f"{targets.x0hat.shape[:2]} of {list(map(str, target_files))}"
        )
    log.info("scoring %s: %d models, lambda %g (whole loss: %g)", method, len(models), lam,
             whole_lam)  # fmt: skip
    scores = trak_scores(train, target, lam)
    save_scores(
        outputs,
        scores,
        targets.index(),
        {
            "method": method,
            "sign": "positive = including the training example lowers f_t",
            "grid": targets.grid.tolist(),
            "lambda": lam,
            "lambda_record": record,
            "models": [
                {"model_id": model_id, **identity}
                for model_id, identity in zip(models, identities, strict=True)
            ],
            "shape": list(scores.shape),
            "attribution": asdict(attribution),
            **dict(provenance),
        },
        whole_loss=trak_scores(train, whole_target, whole_lam)[:, 0],
    )


# ----------------------------------------------------------------------------- rule entry points


def run_featurize_train(smk: Any) -> None:
    """Rule featurize_train: TRAK features of one shard of the training split for one model."""
    torch.set_num_threads(smk.threads)
    featurize_train_shard(
        model_dir=Path(smk.input.model).parent,
        train_split=smk.input.train,
        out_path=smk.output.features,
        model_id=smk.wildcards.model_id,
        output_function=smk.params.output_function,
        projector=smk.params.projector,
        shard=int(smk.wildcards.shard),
        attribution=AttributionSettings.from_config(smk.params.attribution),
        device=smk.params.device,
        latents=smk.input.get("latents"),
        text_states=smk.input.get("text_states"),
        caption_dropout=float(smk.params.caption_dropout),
    )


def run_featurize_targets(smk: Any) -> None:
    """Rule featurize_targets: TRAK features of one target set for one model."""
    torch.set_num_threads(smk.threads)
    featurize_target_set(
        model_dir=Path(smk.input.model).parent,
        targets_path=smk.input.targets,
        target_set=smk.wildcards.target_set,
        out_paths={"features": smk.output.features, "whole_loss": smk.output.whole_loss},
        model_id=smk.wildcards.model_id,
        output_function=smk.params.output_function,
        projector=smk.params.projector,
        attribution=AttributionSettings.from_config(smk.params.attribution),
        device=smk.params.device,
        text_states=smk.input.get("text_states"),
    )


def run_score(smk: Any) -> None:
    """Rule score: TRAK scores of one method from every full model's features, averaged."""
    score_method(
        method=smk.wildcards.method,
        models=smk.params.models,
        feature_paths={
            key: smk.input[key]
            for key in ("train_features", "target_features", "whole_loss_features")
        },
        target_files=smk.input.targets,
        target_sets=smk.params.target_sets,
        lambda_path=smk.input.lam,
        outputs=dict(smk.output.items()),
        attribution=AttributionSettings.from_config(smk.params.attribution),
        provenance=dict(smk.params.provenance),
    )
