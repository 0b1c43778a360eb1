"""The influence jobs: fit a model's factors, score every target against every training example
for each (variant, damping) with it, then average over models and choose the damping.

Files (each written here and read here only):

- ``factors.safetensors`` + ``.json``: per layer the eigenbases and eigenvalues of
  :class:`~stepattr.influence.kfac.LayerBasis` (float64), and the record (model SHA-256,
  layers, rows, draws, seed);
- ``scores.npy`` + ``.json`` per (output function, model): raw scores ``(C, m, G, n)`` float32
  for the C (variant, damping factor) pairs the record lists.

Then the method's score directory in the workflow's format (:mod:`stepattr.trak.storage`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stepattr.core.diffusion import load_model, resolve_device
from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_path, load_json, save_json, save_npy, sha256_file
from stepattr.core.names import parse_influence_method
from stepattr.core.seeds import numpy_rng
from stepattr.influence.kfac import (
    InfluenceSettings,
    KroneckerLayer,
    LayerBasis,
    RotatedGradients,
    fit_bases,
    inverse_weights,
    kronecker_layers,
    stream_scores,
)
from stepattr.lds.jobs import default_choice, heldout_choices, heldout_data
from stepattr.targets.sets import load_target_sets
from stepattr.trak.features import AttributionSettings, target_features, whole_loss_features
from stepattr.trak.storage import save_scores

log = logging.getLogger(__name__)

BASIS_TENSORS = ("q_in", "lam_in", "q_out", "lam_out", "corrected")
FIT_SUBSET = 12  # seed stream of influence.fit_examples' choice


def sidecar(path: str | os.PathLike) -> Path:
    """``.../factors.safetensors -> .../factors.json`` (and ``scores.npy -> scores.json``)."""
    return Path(path).with_suffix(".json")


def fit_rows(num_train: int, fit_examples: int | None, seed: int) -> np.ndarray:
    """Training rows the factors are fit on: all, or a seeded sorted choice of that many."""
    if fit_examples is None or fit_examples >= num_train:
        return np.arange(num_train)
    rows = numpy_rng(seed, FIT_SUBSET).choice(num_train, fit_examples, replace=False)
    return np.sort(rows)


def save_factors(
    path: str | os.PathLike,
    layers: Sequence[KroneckerLayer],
    bases: Sequence[LayerBasis],
    info: Mapping[str, Any],
) -> None:
    tensors = {
        f"{i}.{key}": getattr(basis, key).contiguous()
        for i, basis in enumerate(bases)
        for key in BASIS_TENSORS
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    record = {
        **info,
        "layers": [
            {"name": la.name, "d_out": la.d_out, "d_in": la.d_in, "bias": la.bias,
             "positions": basis.positions}
            for la, basis in zip(layers, bases, strict=True)
        ],
    }  # fmt: skip
    save_json(sidecar(path), record)


def load_factors(
    path: str | os.PathLike, layers: Sequence[KroneckerLayer]
) -> tuple[list[LayerBasis], dict[str, Any]]:
    """A model's bases, checked against its layers (names and shapes), and their record."""
    record = load_json(sidecar(path))
    saved = [(la["name"], la["d_out"], la["d_in"]) for la in record["layers"]]
    if saved != [(la.name, la.d_out, la.d_in) for la in layers]:
        raise ValueError(f"{path}: factors were fit on layers {saved[:3]}..., not this model's")
    tensors = load_file(str(path))
    bases = [
        LayerBasis(**{key: tensors[f"{i}.{key}"] for key in BASIS_TENSORS},
                   positions=int(la["positions"]))
        for i, la in enumerate(record["layers"])
    ]  # fmt: skip
    return bases, record


def fit_factors(
    model_dir: str | os.PathLike,
    train_split: str | os.PathLike,
    out_path: str | os.PathLike,
    model_id: str,
    influence: InfluenceSettings,
    attribution: AttributionSettings,
    device: str,
) -> None:
    """Rule fit_influence_factors: both passes over the training set, then the file."""
    model_dir = Path(model_dir)
    model, schedule, _ = load_model(model_dir, resolve_device(device))
    layers, uncovered = kronecker_layers(model)
    images, _, _ = load_split(train_split)
    seed = influence.seed
    rows = fit_rows(len(images), influence.fit_examples, seed)
    draws = influence.fit_draws or attribution.train_timesteps
    log.info("fitting %d layers on %d examples x %d draws", len(layers), len(rows), draws)
    bases = fit_bases(
        model, layers, to_model_space(images[rows]), rows.tolist(), draws, seed,
        schedule.alphas_cumprod, influence.batch_size,
    )  # fmt: skip
    info = {
        "model_id": model_id,
        "model_sha256": sha256_file(model_dir / "model.safetensors"),
        "fit_examples": len(rows),
        "fit_draws": draws,
        "seed": seed,
        "gauss_newton": "sampled outputs: <eps_hat, xi>, xi ~ N(0, I) seeded per example",
        "uncovered_parameters": uncovered,
    }
    save_factors(out_path, layers, bases, info)


def variant_combos(influence: InfluenceSettings) -> list[tuple[str, float]]:
    """The (variant, damping factor) pairs one scoring pass computes."""
    return [(v, d) for v in influence.methods for d in influence.dampings]


def model_scores(
    model_dir: str | os.PathLike,
    factors_path: str | os.PathLike,
    train_split: str | os.PathLike,
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    out_paths: Mapping[str, str | os.PathLike],
    model_id: str,
    output_function: str,
    influence: InfluenceSettings,
    attribution: AttributionSettings,
    device: str,
) -> None:
    """Rule influence_model_scores: one model's raw scores for every (variant, damping):
    ``out_paths["scores"]`` (C, m, G, n) per step, ``["whole_loss"]`` (C, m, n) for D-TRAK's
    whole loss (:func:`stepattr.trak.features.whole_loss_features`).

    Target and training gradients use TRAK's draws (``attribution.seed``, R =
    ``target_resamples``, K = ``train_timesteps``), so the two methods differ only in how
    they weight gradients.
    """
    model_dir = Path(model_dir)
    model, schedule, _ = load_model(model_dir, resolve_device(device))
    layers, uncovered = kronecker_layers(model)
    bases, record = load_factors(factors_path, layers)
    sha = sha256_file(model_dir / "model.safetensors")
    if record["model_sha256"] != sha:
        raise ValueError(f"{factors_path}: factors were fit on other weights than {model_dir}")
    rotated = RotatedGradients(
        model, output_function, schedule.alphas_cumprod, layers, bases, uncovered,
        attribution.draws_per_pass,
    )  # fmt: skip
    targets = load_target_sets(target_files, target_sets)
    seed, batch = attribution.seed, influence.batch_size

    def queries_of(rows: np.ndarray, x0hat: np.ndarray) -> np.ndarray:
        return target_features(
            rotated, torch.from_numpy(x0hat), targets.target_id[rows], targets.grid.tolist(),
            attribution.target_resamples, seed, batch, progress=True,
        )  # fmt: skip

    queries = queries_of(np.arange(len(targets.target_id)), targets.x0hat)
    whole = whole_loss_features(queries_of, targets.x0hat, targets.at_final_image().x0hat, queries)
    m, g = queries.shape[:2]
    combos = variant_combos(influence)
    images, _, _ = load_split(train_split)
    both = np.concatenate([queries.reshape(m * g, -1), whole[:, 0]])
    scores = stream_scores(
        rotated, torch.from_numpy(both), inverse_weights(bases, combos),
        to_model_space(images), list(range(len(images))), attribution.train_timesteps,
        seed, schedule.num_train_timesteps, batch, attribution.train_timestep_draws,
    )  # fmt: skip
    if not np.isfinite(scores).all():
        raise ValueError(f"{out_paths['scores']}: influence scores contain NaN or inf; not written")
    save_npy(out_paths["whole_loss"], scores[:, m * g :])
    save_npy(out_paths["scores"], scores[:, : m * g].reshape(len(combos), m, g, -1))
    save_json(
        sidecar(out_paths["scores"]),
        {
            "model_id": model_id,
            "model_sha256": sha,
            "factors_sha256": sha256_file(factors_path),
            "output_function": output_function,
            "combos": [{"variant": v, "damping": d} for v, d in combos],
            "grid": targets.grid.tolist(),
            "target_id": targets.target_id.tolist(),
            "rotated_gradients": rotated.describe(),
        },
    )


def method_scores(
    method: str,
    raw_paths: Mapping[str, Sequence[str | os.PathLike]],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    heldout: tuple[str | os.PathLike, Sequence[str | os.PathLike], Sequence[str]] | None,
    outputs: Mapping[str, str | os.PathLike],
    influence: InfluenceSettings,
    provenance: Mapping[str, Any],
) -> None:
    """Rule influence_scores: a method's scores averaged over models (``raw_paths``:
    per model ``scores`` and ``whole_loss`` files), each protocol at the damping with its best
    held-out LDS (``heldout``: masks file, output files, model ids; None: the first damping,
    unchosen). The scored subsets are never read."""
    variant, output_function = parse_influence_method(method)
    targets = load_target_sets(target_files, target_sets)
    raws, wholes, records = [], [], []
    for path, whole_path in zip(raw_paths["scores"], raw_paths["whole_loss"], strict=True):
        record = load_json(sidecar(path))
        if record["output_function"] != output_function:
            raise ValueError(f"{path}: scores of {record['output_function']}, not {method}")
        if record["target_id"] != targets.target_id.tolist():
            raise ValueError(f"{path}: rows are not the current targets in order")
        raw, whole = np.load(path, mmap_mode="r"), np.load(whole_path, mmap_mode="r")
        if whole.shape != (raw.shape[0], raw.shape[1], raw.shape[3]):  # (C, m, n) of (C, m, G, n)
            raise ValueError(f"{whole_path}: shape {whole.shape} does not match {path}")
        raws.append(raw)
        wholes.append(whole)
        records.append(record)
    combos = [(c["variant"], c["damping"]) for c in records[0]["combos"]]
    if any([(c["variant"], c["damping"]) for c in r["combos"]] != combos for r in records):
        raise ValueError(f"{list(map(str, raw_paths['scores']))}: models scored other dampings")
    dampings = [d for v, d in combos if v == variant]
    if not dampings:
        raise ValueError(f"{raw_paths['scores'][0]}: no {variant} scores (influence.methods)")

    def averaged(arrays: Sequence[np.ndarray]) -> Callable[[float], np.ndarray]:
        def scores_at(damping: float) -> np.ndarray:
            c = combos.index((variant, damping))
            mean = np.mean([a[c] for a in arrays], axis=0, dtype=np.float64)
            return mean.astype(np.float32)

        return scores_at

    if heldout is None:
        choice = default_choice("damping", "influence.dampings", dampings)
    else:
        choice = heldout_choices(
            "damping", "influence.dampings", dampings, averaged(raws), averaged(wholes),
            heldout_data(*heldout),
        )  # fmt: skip
    whole_damping = choice["whole_loss"]["damping"]
    log.info("%s: damping %g x mean eigenvalue (whole loss: %g)", method, choice["damping"],
             whole_damping)  # fmt: skip
    scores = averaged(raws)(choice["damping"])
    save_scores(
        outputs,
        scores,
        targets.index(),
        {
            "method": method,
            "variant": variant,
            "output_function": output_function,
            "sign": "positive = including the training example lowers f_t",
            "grid": targets.grid.tolist(),
            "damping": choice["damping"],
            "damping_record": choice,
            "models": [
                {key: r[key] for key in ("model_id", "model_sha256", "factors_sha256")}
                for r in records
            ],
            "shape": list(scores.shape),
            "influence": asdict(influence),
            **dict(provenance),
        },
        whole_loss=averaged(wholes)(whole_damping),
    )


# ----------------------------------------------------------------------------- rule entry points


def run_fit_factors(smk: Any) -> None:
    """Rule fit_influence_factors: K-FAC factors, eigenbases and EK-FAC eigenvalues of a full
    model."""
    fit_factors(
        model_dir=Path(smk.input.model).parent,
        train_split=smk.input.train,
        out_path=smk.output.factors,
        model_id=smk.wildcards.model_id,
        influence=InfluenceSettings.from_config(smk.params.influence),
        attribution=AttributionSettings.from_config(smk.params.attribution),
        device=smk.params.device,
    )


def run_model_scores(smk: Any) -> None:
    """Rule influence_model_scores: one model's influence scores for every (variant, damping)."""
    model_scores(
        model_dir=Path(smk.input.model).parent,
        factors_path=smk.input.factors,
        train_split=smk.input.train,
        target_files=smk.input.targets,
        target_sets=smk.params.target_sets,
        out_paths={"scores": smk.output.scores, "whole_loss": smk.output.whole_loss},
        model_id=smk.wildcards.model_id,
        output_function=smk.wildcards.output_function,
        influence=InfluenceSettings.from_config(smk.params.influence),
        attribution=AttributionSettings.from_config(smk.params.attribution),
        device=smk.params.device,
    )


def run_influence_scores(smk: Any) -> None:
    """Rule influence_scores: a method's scores averaged over models, at its held-out damping."""
    heldout = smk.params.heldout_models
    method_scores(
        method=smk.wildcards.method,
        raw_paths={"scores": smk.input.raw, "whole_loss": smk.input.raw_whole_loss},
        target_files=smk.input.targets,
        target_sets=smk.params.target_sets,
        heldout=(smk.input.masks, smk.input.outputs, heldout) if heldout else None,
        outputs=dict(smk.output.items()),
        influence=InfluenceSettings.from_config(smk.params.influence),
        provenance=dict(smk.params.provenance),
    )
