"""Reading the target sets written by target generation, in the row order of every score file.

Scores and subset outputs have one row per target: the generated targets, then the validation
targets (the order of ``TARGET_SETS``). :func:`load_target_sets` concatenates the sets in the
order given, checks each with :func:`stepattr.targets.generate.check_targets`, and checks that they
share one grid and that target ids are unique.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stepattr.targets.generate import check_targets


@dataclass(frozen=True)
class TargetSets:
    """All targets of a run, concatenated; arrays as stored (float32 in [-1, 1])."""

    x0hat: np.ndarray  # (m, G, C, H, W)
    x0: np.ndarray  # (m, C, H, W)
    grid: np.ndarray  # (G,) int64, config order
    target_id: np.ndarray  # (m,) int64, unique
    label: np.ndarray  # (m,) int64, -1 where unknown
    target_set: np.ndarray  # (m,) str

    def index(self) -> pd.DataFrame:
        """The ``index.csv`` that goes beside every ``scores.npy``: one line per row."""
        return pd.DataFrame(
            {
                "row": np.arange(len(self.target_id)),
                "target_set": self.target_set,
                "target_id": self.target_id,
                "label": self.label,
            }
        )


def load_target_sets(paths: Sequence[str | os.PathLike], names: Sequence[str]) -> TargetSets:
    """Load ``{TARGETS}/{name}.npz`` files in order, naming the file at fault on bad input."""
    if len(paths) != len(names) or not paths:
        raise ValueError(
            f"need one target file per target set, got {list(paths)} for {list(names)}"
        )
    parts, grid = [], None
    for path, name in zip(paths, names, strict=True):
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        check_targets(arrays, str(path))
        part = {key: arrays[key] for key in ("x0hat", "x0", "grid", "target_id", "label")}
        m = len(part["target_id"])
        if grid is not None and not np.array_equal(grid, part["grid"]):
            raise ValueError(f"{path}: grid {part['grid'].tolist()} differs from {grid.tolist()}")
        grid = part["grid"]
        part["target_set"] = np.full(m, name)
        parts.append(part)
    ids = np.concatenate([p["target_id"] for p in parts]).astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"target ids are not unique across {list(paths)}")
    return TargetSets(
        x0hat=np.concatenate([p["x0hat"] for p in parts]).astype(np.float32, copy=False),
        x0=np.concatenate([p["x0"] for p in parts]).astype(np.float32, copy=False),
        grid=np.asarray(grid, dtype=np.int64),
        target_id=ids,
        label=np.concatenate([p["label"] for p in parts]).astype(np.int64),
        target_set=np.concatenate([p["target_set"] for p in parts]),
    )
