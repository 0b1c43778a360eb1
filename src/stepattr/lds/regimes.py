"""The regime screen: how much of retraining any attribution could explain, per regime.

A regime is what sets the signal in the LDS's ground truth: training-set size, training
length, learning-rate schedule, model width, seeds per subset. Each is an overlay under
``config/regimes/``; stacked with ``config/regimes/screen.yaml`` it trains a few subsets with
two seeds each, enough for the retraining ceiling (:func:`stepattr.lds.metric.seed_agreement`)
at a fraction of a full LDS run's cost. This module reads such runs back and writes one row
per regime: its recipe (from the models' own config.json), the ceiling per step and on D-TRAK's
protocol with their two-way CIs, and the measured cost of one subset model.

    python -m stepattr.lds.regimes results/regimes/* --out results/benchmarks/regimes.csv
    python -m stepattr.lds.regimes targets results/regimes/base   # the screen's output files
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stepattr.core.images import load_split
from stepattr.core.io import save_csv
from stepattr.lds.ground_truth import SUBSET_MODEL, load_subset_outputs_by_seed
from stepattr.lds.metric import bootstrap_ceiling
from stepattr.workflow.runtimes import read_benchmark

SCREEN_SUBSETS, SCREEN_SEEDS = 6, 2  # config/regimes/screen.yaml


def screen_targets(
    outdir: str, subsets: int = SCREEN_SUBSETS, seeds: int = SCREEN_SEEDS
) -> list[str]:
    """The output files a screen needs: every (subset, seed) model's f_t and D-TRAK loss."""
    return [
        f"{outdir}/lds/outputs/subset_{j}_s{s}.npz" for j in range(subsets) for s in range(seeds)
    ]


def recipe(outdir: Path) -> dict:
    """The regime's recipe, read from a subset model's config.json and the training split."""
    configs = sorted((outdir / "models").glob("subset_*_s*/config.json"))
    if not configs:
        raise FileNotFoundError(f"{outdir / 'models'}: no subset model to read the recipe from")
    model = json.loads(configs[0].read_text())
    info, unet = model["info"], model["unet"]
    (split,) = (outdir / "data").glob("*/train.npz")
    _, labels, classes = load_split(split)
    n_train = len(labels)
    steps, batch = int(info["steps"]), int(info["train"]["batch_size"])
    return {
        "classes": len(classes),
        "n_train": n_train,
        "subset_size": info["subset_size"],
        "steps": steps,
        "batch_size": batch,
        "epochs": round(steps * batch / n_train, 1),
        "lr_schedule": info["train"].get("lr_schedule", "constant"),
        "channels": "x".join(str(c) for c in unet["block_out_channels"]),
    }


def subset_model_cost(outdir: Path) -> tuple[float, float]:
    """Mean (wall s, CPU s) of one subset model's training job (its benchmark files)."""
    costs = [read_benchmark(p) for p in sorted((outdir / "benchmarks" / "retrain").glob("*.tsv"))]
    if not costs:
        return float("nan"), float("nan")
    wall, cpu = np.mean(costs, axis=0)
    return float(wall), float(cpu)


def regime_row(outdir: str | Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """One regime's screen: recipe, ceiling per step (mean over steps, mean CI half-width,
    steps whose CI excludes 0, each step's value) and on D-TRAK's protocol, cost."""
    outdir = Path(outdir)
    paths = sorted((outdir / "lds" / "outputs").glob("subset_*_s*.npz"))
    ids = [p.stem for p in paths if SUBSET_MODEL.fullmatch(p.stem)]
    rows, f, dtrak = load_subset_outputs_by_seed(paths, ids)
    with np.load(paths[0]) as data:
        grid = data["grid"].tolist()
    per_step = [bootstrap_ceiling(f[:, g], n_boot, seed) for g in range(f.shape[1])]
    whole = bootstrap_ceiling(dtrak, n_boot, seed)
    wall, cpu = subset_model_cost(outdir)
    return {
        "regime": outdir.name,
        **recipe(outdir),
        "subsets": len(rows),
        "seeds": f.shape[-1],
        "targets": f.shape[0],
        "ceiling_mean": np.mean([r.lds for r in per_step]),
        "ceiling_half_width": np.mean([(r.ci_high - r.ci_low) / 2 for r in per_step]),
        "ceiling_steps_above_0": sum(r.ci_low > 0 for r in per_step),
        "ceiling_dtrak": whole.lds,
        "ceiling_dtrak_ci": f"[{whole.ci_low:.2f}, {whole.ci_high:.2f}]",
        **{f"ceiling_t{t}": r.lds for t, r in zip(grid, per_step, strict=True)},
        "subset_model_wall_s": wall,
        "subset_model_cpu_s": cpu,
    }


def regime_table(outdirs: Sequence[str | Path], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame([regime_row(d, n_boot, seed) for d in outdirs])


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["targets"]:
        print(" ".join(screen_targets(argv[1].rstrip("/"))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdirs", nargs="+", help="screen runs (config/regimes/<regime>.yaml)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the table here (CSV)")
    args = parser.parse_args(argv)
    table = regime_table(args.outdirs, args.bootstrap, args.seed)
    if args.out:
        save_csv(args.out, table)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
