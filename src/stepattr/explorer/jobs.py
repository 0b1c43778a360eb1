"""The explorer rule's job: the workflow's files in, ``{outdir}/explorer/index.html`` out.

Scores are read with :func:`stepattr.lds.jobs.load_method_scores` (checked against the current
targets, rows in target order), targets with :func:`stepattr.targets.sets.load_target_sets`
and :func:`stepattr.figures.jobs.load_trajectories` (x_t, x0hat_t as images: decoded for the
text-to-image family), the training split with
:func:`stepattr.figures.jobs.load_training_images` (its captions where it has some).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stepattr.core.io import load_json
from stepattr.core.provenance import describe_config
from stepattr.explorer.data import MethodScores, PatchScores, page_data
from stepattr.explorer.page import render_page, save_page
from stepattr.figures.jobs import load_training_images, load_trajectories
from stepattr.lds.jobs import load_method_scores, method_label
from stepattr.targets.sets import load_target_sets
from stepattr.transitions.feature_attribution import load_intervals

log = logging.getLogger(__name__)


def load_patch_scores(
    scores: str | os.PathLike, index: str | os.PathLike, meta: str | os.PathLike
) -> PatchScores:
    """The patch scores of stage figures (rows = (target, patch), columns = patch steps)."""
    values = np.load(scores, mmap_mode="r")
    table = pd.read_csv(index)
    record = load_json(meta)
    missing = {"row", "target_id", "patch", "x0", "y0", "x1", "y1"} - set(table.columns)
    if missing or "steps" not in record:
        raise ValueError(f"{index} / {meta}: not patch scores (missing {sorted(missing)} or steps)")
    if values.ndim != 3 or values.shape[:2] != (len(table), len(record["steps"])):
        raise ValueError(f"{scores}: shape {values.shape} does not match {index} and {meta}")
    return PatchScores(str(record["method"]), values, table, [int(s) for s in record["steps"]])


def load_curves(paths: Sequence[str | os.PathLike]) -> pd.DataFrame | None:
    """The feature curves of every target set, concatenated (ids are global); None for none."""
    if not paths:
        return None
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def explorer_job(
    score_dirs: Mapping[str, str | os.PathLike],
    target_files: Sequence[str | os.PathLike],
    target_sets: Sequence[str],
    train_path: str | os.PathLike,
    lds_path: str | os.PathLike | None,
    curve_paths: Sequence[str | os.PathLike],
    interval_paths: Sequence[str | os.PathLike],
    patch_files: Mapping[str, str | os.PathLike] | None,
    top_k: int,
    html: str | os.PathLike,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the explorer page; return its data (the test reads it back).

    ``score_dirs``: method -> its score directory, in selector order; ``patch_files``: the
    patch scores' ``scores``, ``index`` and ``meta``, or None where the run has none.
    """
    started = time.perf_counter()
    targets = load_target_sets(target_files, target_sets)
    train = load_training_images(train_path)
    trajectories = load_trajectories(
        target_files, target_sets, targets.target_id.tolist(), train.class_names
    )
    methods = []
    for name, directory in score_dirs.items():
        scores, meta = load_method_scores(directory, targets)
        methods.append(MethodScores(name, method_label(name, meta), scores, meta))
    intervals = None
    if interval_paths:
        intervals = load_intervals(dict(zip(target_sets, interval_paths, strict=True)))
    patches = None if patch_files is None else load_patch_scores(**patch_files)
    data = page_data(
        target_ids=targets.target_id.tolist(),
        target_sets=targets.target_set.tolist(),
        target_labels=targets.label.tolist(),
        prompts=None if targets.prompt is None else targets.prompt.tolist(),
        trajectories=trajectories,
        grid=targets.grid.tolist(),
        train=train,
        methods=methods,
        top_k=top_k,
        curves=load_curves(curve_paths),
        intervals=intervals,
        lds=None if lds_path is None else pd.read_csv(lds_path),
        patches=patches,
        title=f"Attribution explorer: {Path(train_path).parent.name}",
        heading=f"config {describe_config(provenance)}",
    )
    save_page(html, render_page(data))
    log.info(
        "explorer: %d targets x %d steps x %d methods, %d training thumbnails, %.0f kB in %.1f s",
        len(data["targets"]),
        len(data["grid"]),
        len(methods),
        len(data["train"]),
        Path(html).stat().st_size / 1e3,
        time.perf_counter() - started,
    )
    return data
