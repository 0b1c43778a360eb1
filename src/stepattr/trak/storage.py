"""Feature and score files on disk: the one writer and the one reader of each format.

Scores: a directory ``scores/<method>/`` with ``scores.npy`` (rows, G, n_train) float32,
``index.csv`` (row -> target set and id) and ``meta.json`` (method, grid, provenance), written
by :func:`save_scores` (TRAK, baselines, patch scores) and read, memory-mapped and checked, by
:func:`load_scores` (LDS tables, feature attribution, figures, counterfactual removals).

Every method of the LDS tables also writes ``whole_loss.npy`` (rows, n_train) float32: its
scores for D-TRAK's whole-loss protocol (the final image's loss averaged over the grid's
timesteps, at that protocol's own held-out lambda or damping), read by :func:`load_whole_loss`.

Features: ``.npy`` arrays with a ``.json`` record of how they were made.

Each features file ``X.npy`` gets a sidecar ``X.json`` (the featurizer's ``describe()``: output
function, projector, its seed and sizes; the model's SHA-256; the draws). Train and target
features of one model are comparable only if they share the featurizer and the weights: a
job that ran on another device (fast_jl on a GPU node, the torch projector elsewhere) or on
retrained weights would silently give meaningless scores, so :func:`check_compatible` refuses
them, naming the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stepattr.core.io import load_json, save_csv, save_json, save_npy

FEATURE_DTYPES = ("float32", "float16")
IDENTITY_KEYS = ("featurizer", "model_sha256")
WHOLE_LOSS_VIEW = "x_0 at every grid timestep, averaged over the grid (D-TRAK's whole loss)"


def info_path(features_path: str | os.PathLike) -> Path:
    """``.../train_0.npy -> .../train_0.json``."""
    return Path(features_path).with_suffix(".json")


def save_features(
    path: str | os.PathLike, features: np.ndarray, dtype: str, info: Mapping[str, Any]
) -> None:
    """Write features in ``dtype`` (float32 | float16) and their sidecar, each atomically."""
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"attribution.feature_dtype = {dtype!r}; expected one of {FEATURE_DTYPES}")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: features contain NaN or inf; nothing written")
    save_npy(path, features.astype(dtype))
    save_json(info_path(path), {**info, "shape": list(features.shape), "dtype": dtype})


def load_info(features_path: str | os.PathLike) -> dict[str, Any]:
    path = info_path(features_path)
    if not path.exists():
        raise ValueError(f"{path}: missing record of how {features_path} was made")
    return load_json(path)


def check_compatible(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The shared identity (featurizer, model weights) of feature files, or a ValueError."""
    infos = [load_info(p) for p in paths]
    first = {key: infos[0].get(key) for key in IDENTITY_KEYS}
    for path, info in zip(paths, infos, strict=True):
        for key in IDENTITY_KEYS:
            if info.get(key) != first[key]:
                raise ValueError(
                    f"{path}: {key} {info.get(key)} differs from {first[key]} of {paths[0]}; "
                    "features of one model must come from the same weights and projection"
                )
    return first


def gather_shards(
    shard_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    num_rows: int | None = None,
) -> np.ndarray:
    """Concatenate train-feature shards (in shard order) into one file with one sidecar."""
    identity = check_compatible(shard_paths)
    infos = [load_info(p) for p in shard_paths]
    rows = [info["rows"] for info in infos]
    for (_, stop), (start, _), path in zip(rows, rows[1:], shard_paths[1:], strict=False):
        if start != stop:
            raise ValueError(f"{path}: rows start at {start}, the previous shard ended at {stop}")
    parts = [np.load(p) for p in shard_paths]
    features = np.concatenate(parts)
    total = rows[-1][1] - rows[0][0]
    if features.shape[0] != total or (num_rows is not None and total != num_rows):
        raise ValueError(
            f"shards {list(map(str, shard_paths))} hold {features.shape[0]} rows covering "
            f"{rows[0][0]}..{rows[-1][1]}, expected {num_rows if num_rows is not None else total}"
        )
    info = {key: value for key, value in infos[0].items() if key not in ("rows", "shard", "shape")}
    info.update(identity, rows=[rows[0][0], rows[-1][1]], shards=len(shard_paths))
    save_features(out_path, features, infos[0]["dtype"], info)
    return features


def load_method_features(
    train_paths: Sequence[str | os.PathLike], target_paths: Sequence[str | os.PathLike]
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, Any]]]:
    """Per model: train features ``(n, k)`` (memory-mapped), target sets concatenated ``(m, G, k)``.

    The one reader of feature files: every stage that scores reads features here. ``target_paths``
    is model-major (model c's target-set files in row order, the same count per model). Returns
    also each model's identity (featurizer, weights), after :func:`check_compatible` has checked
    that its files agree.
    """
    n_models = len(train_paths)
    if not n_models or len(target_paths) % n_models:
        raise ValueError(f"{len(target_paths)} target feature files for {n_models} models")
    per_model = len(target_paths) // n_models
    train, target, identities = [], [], []
    for c, train_path in enumerate(train_paths):
        paths = target_paths[c * per_model : (c + 1) * per_model]
        identities.append(check_compatible([train_path, *paths]))
        phi = np.load(train_path, mmap_mode="r")
        parts = [np.load(p) for p in paths]
        for path, part in zip(paths, parts, strict=True):
            if part.ndim != 3 or part.shape[-1] != phi.shape[-1]:
                raise ValueError(
                    f"{path}: features {part.shape} do not match {train_path} {phi.shape}"
                )
        train.append(phi)
        target.append(np.concatenate(parts))
    return train, target, identities


def save_scores(
    paths: Mapping[str, str | os.PathLike],
    scores: np.ndarray,
    index: pd.DataFrame,
    meta: Mapping[str, Any],
    whole_loss: np.ndarray | None = None,
) -> None:
    """Write a score directory: ``paths["scores"]`` (.npy), ``["index"]`` (.csv), ``["meta"]``,
    and ``["whole_loss"]`` (rows, n_train) where given (the methods of the LDS tables)."""
    if whole_loss is not None:
        if whole_loss.shape != (scores.shape[0], scores.shape[2]):
            raise ValueError(
                f"{paths['whole_loss']}: whole-loss scores {whole_loss.shape} do not match "
                f"scores {scores.shape}"
            )
        save_npy(paths["whole_loss"], np.asarray(whole_loss, dtype=np.float32))
    save_npy(paths["scores"], scores)
    save_csv(paths["index"], index)
    save_json(paths["meta"], dict(meta))


def load_whole_loss(path: str | os.PathLike, scores: np.ndarray) -> np.ndarray:
    """A method's whole-loss scores (rows, n_train), checked against its ``scores.npy``."""
    whole = np.load(path)
    if whole.shape != (scores.shape[0], scores.shape[2]):
        raise ValueError(
            f"{path}: shape {whole.shape}, expected {(scores.shape[0], scores.shape[2])} "
            "beside its scores.npy"
        )
    return whole


def load_scores(
    scores_path: str | os.PathLike, index_path: str | os.PathLike, meta_path: str | os.PathLike
) -> tuple[np.ndarray, pd.DataFrame, list[int], dict[str, Any]]:
    """Memory-mapped scores (rows, G, n), their index and grid, and meta.json; checked."""
    scores = np.load(scores_path, mmap_mode="r")
    index = pd.read_csv(index_path)
    meta = load_json(meta_path)
    missing = {"row", "target_set", "target_id"} - set(index.columns)
    if missing:
        raise ValueError(f"{index_path}: missing columns {sorted(missing)}")
    if "grid" not in meta:
        raise ValueError(f"{meta_path}: no 'grid' entry")
    grid = [int(s) for s in meta["grid"]]
    if scores.ndim != 3 or scores.shape[:2] != (len(index), len(grid)):
        raise ValueError(
            f"{scores_path}: shape {scores.shape}, expected ({len(index)}, {len(grid)}, n_train) "
            f"from {index_path} and the grid of {meta_path}"
        )
    return scores, index, grid, meta


def score_row(index: pd.DataFrame, target_id: int, target_set: str | None = None) -> int:
    """The scores row of a global target id (checked against its target set when given)."""
    rows = index[index["target_id"] == int(target_id)]
    if len(rows) != 1 or (target_set is not None and rows["target_set"].iloc[0] != target_set):
        raise ValueError(f"no single row for target {target_set or ''} {target_id} in index.csv")
    return int(rows["row"].iloc[0])
