"""Feature files on disk: ``.npy`` arrays with a ``.json`` record of how they were made.

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

from stepattr.io import load_json, save_json, save_npy

FEATURE_DTYPES = ("float32", "float16")
IDENTITY_KEYS = ("featurizer", "model_sha256")


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
    train_paths: Sequence[str | os.PathLike], target_paths: Sequence[Sequence[str | os.PathLike]]
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, Any]]]:
    """Per model: train features ``(n, k)`` (memory-mapped), target sets concatenated ``(m, G, k)``.

    ``target_paths[c]`` are model c's target-set files in row order. Returns also each
    model's identity (featurizer, weights), after checking its files agree.
    """
    if len(train_paths) != len(target_paths) or not train_paths:
        raise ValueError(f"{len(train_paths)} train feature files for {len(target_paths)} models")
    train, target, identities = [], [], []
    for train_path, paths in zip(train_paths, target_paths, strict=True):
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
