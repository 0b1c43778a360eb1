"""Reading the target sets written by target generation, in the row order of every score file.

Scores and subset outputs have one row per target: the generated targets, then the validation
targets (the order of ``TARGET_SETS``). :func:`load_target_sets` concatenates the sets in the
order given, checks each with :func:`stepattr.targets.generate.check_targets`, and checks that they
share one grid and that target ids are unique.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from stepattr.targets.generate import TEXT_TO_IMAGE_FIELDS, check_targets

CARRIED = ("prompt", "decoded_x0hat", "decoded_x0")  # text-to-image keys that TargetSets keeps


@dataclass(frozen=True)
class TargetSets:
    """All targets of a run, concatenated; arrays as stored (float32 in [-1, 1])."""

    x0hat: np.ndarray  # (m, G, C, H, W)
    x0: np.ndarray  # (m, C, H, W)
    grid: np.ndarray  # (G,) int64, config order
    target_id: np.ndarray  # (m,) int64, unique
    label: np.ndarray  # (m,) int64, -1 where unknown
    target_set: np.ndarray  # (m,) str
    prompt: np.ndarray | None = None  # (m,) str: text-to-image targets' prompts
    decoded_x0hat: np.ndarray | None = None  # (m, G, c, h, w): their decoded x0hat_t
    decoded_x0: np.ndarray | None = None  # (m, c, h, w)

    @property
    def image_x0hat(self) -> np.ndarray:
        """x0hat_t as images: decoded for the text-to-image family, else x0hat itself."""
        return self.x0hat if self.decoded_x0hat is None else self.decoded_x0hat

    @property
    def image_x0(self) -> np.ndarray:
        """x_0 as images (see :attr:`image_x0hat`)."""
        return self.x0 if self.decoded_x0 is None else self.decoded_x0

    def at_final_image(self) -> TargetSets:
        """D-TRAK's whole-loss targets: x_0 in place of x0hat_t at every grid step.

        D-TRAK attributes the final image's diffusion loss averaged over timesteps; this view,
        featurized at the grid's timesteps, gives its target features with the per-step
        featurizer. Where x0hat_t is x_0 already (validation targets) it changes nothing.
        """
        g = len(self.grid)

        def spread(x0: np.ndarray | None) -> np.ndarray | None:
            return None if x0 is None else np.repeat(x0[:, None], g, axis=1)

        return replace(self, x0hat=spread(self.x0), decoded_x0hat=spread(self.decoded_x0))

    def index(self) -> pd.DataFrame:
        """The ``index.csv`` that goes beside every ``scores.npy``: one line per row."""
        columns = {
            "row": np.arange(len(self.target_id)),
            "target_set": self.target_set,
            "target_id": self.target_id,
            "label": self.label,
        }
        if self.prompt is not None:
            columns["prompt"] = self.prompt
        return pd.DataFrame(columns)


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
        extra = {key: arrays[key] for key in TEXT_TO_IMAGE_FIELDS if key in arrays}
        if parts and set(extra) != set(parts[0]) - {*part, "target_set"}:
            raise ValueError(f"{path}: mixes text-to-image and pixel target sets")
        part.update(extra)
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
        **{key: np.concatenate([p[key] for p in parts]) for key in CARRIED if key in parts[0]},
    )


def prompt_states(
    targets: TargetSets, text_states: str | os.PathLike | None
) -> torch.Tensor | None:
    """Each target's prompt states (m, L, D) from the text-state cache (the text-to-image
    family), else None; an error where only one of prompts and states is there."""
    if targets.prompt is None and text_states is None:
        return None
    if targets.prompt is None or text_states is None:
        raise ValueError(
            "text-to-image targets need text states, and text states need prompted targets "
            f"(targets with prompts: {targets.prompt is not None}; states: {text_states})"
        )
    from stepattr.text.encoder import states_for

    return states_for(text_states, targets.prompt.tolist())
