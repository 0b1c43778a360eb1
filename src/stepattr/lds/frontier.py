"""Cost against decisiveness of the LDS: a frontier measured on one large run.

A run with C full models and M scored (+ H held-out) subset models contains every smaller
setting (c <= C models, m <= M subsets): their LDS is computed from the same files (the first
c models, the first m scored subsets; lambda chosen on the same held-out subsets for each c),
and their cost is the sum of the benchmark files of exactly the jobs that setting needs
(per-model and per-subset jobs of the models and subsets it uses, plus every shared job).
Each row: settings, job-seconds (wall ``s`` and ``cpu_time`` of the benchmark files), TRAK's
mean LDS over steps, its mean two-way CI half-width, and the number of grid steps whose CI
excludes 0; the baselines' mean LDS on the same subsets beside it.

    python -m stepattr.lds.frontier results/exp1 --method trak --out results/benchmarks
"""

from __future__ import annotations

import argparse
import glob
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stepattr.core.io import read_benchmark, save_csv
from stepattr.lds.ground_truth import load_subset_outputs
from stepattr.lds.metric import bootstrap_lds, predicted_outputs, select_lambda
from stepattr.trak.scores import trak_scores_multi
from stepattr.trak.storage import load_method_features

FULL = re.compile(r"full_(\d+)")
SUBSET = re.compile(r"subset_(\d+)_s\d+")


def job_cost(outdir: Path, models: int, rows: set[int]) -> tuple[float, float]:
    """Summed (wall s, CPU s) of the run's benchmark files that a setting needs: jobs of full
    models < ``models``, of subset rows in ``rows``, and every job tied to neither."""
    wall = cpu = 0.0
    for path in (outdir / "benchmarks").rglob("*.tsv"):
        name = str(path.relative_to(outdir / "benchmarks"))
        full, subset = FULL.search(name), SUBSET.search(name)
        if full and int(full.group(1)) >= models:
            continue
        if subset and int(subset.group(1)) not in rows:
            continue
        s, c = read_benchmark(path)
        wall, cpu = wall + s, cpu + c
    return wall, cpu


def step_summary(
    scores: np.ndarray, masks: np.ndarray, f: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float, int]:
    """(mean LDS over steps, mean CI half-width, steps whose CI excludes 0)."""
    values, halves, decisive = [], [], 0
    for g in range(f.shape[1]):
        res = bootstrap_lds(predicted_outputs(masks, scores[:, g]), -f[:, g], n_boot, seed)
        values.append(res.lds)
        halves.append((res.ci_high - res.ci_low) / 2)
        decisive += int(res.ci_low > 0)
    return float(np.mean(values)), float(np.mean(halves)), decisive


def frontier(
    outdir: str | Path,
    method: str = "trak",
    target_sets: Sequence[str] = ("generated", "validation"),
    lambdas: Sequence[float] = (1e-2, 1e-1, 1, 10, 1e2, 1e3, 1e4, 1e5),
    subset_counts: Sequence[int] | None = None,
    baselines: Sequence[str] = ("random", "pixel", "embedding", "graddot"),
    n_boot: int = 300,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (models, scored subsets) setting of the run at ``outdir``."""
    outdir = Path(outdir)
    feats = outdir / "features" / method
    models = sorted(
        (p.parent.name for p in feats.glob("full_*/train.npy")),
        key=lambda m: int(FULL.fullmatch(m).group(1)),
    )
    train, target, _ = load_method_features(
        [feats / m / "train.npy" for m in models],
        [feats / m / f"{s}.npy" for m in models for s in target_sets],
    )
    paths = sorted(glob.glob(str(outdir / "lds" / "outputs" / "subset_*.npz")))
    rows, f, _ = load_subset_outputs(paths, [Path(p).stem for p in paths])
    table = pd.read_csv(outdir / "subsets" / "subsets.csv").set_index("row")
    roles = table.loc[rows, "role"].to_numpy()
    masks = np.load(outdir / "subsets" / "masks.npy")[rows]
    scored, heldout = np.flatnonzero(roles == "scored"), np.flatnonzero(roles == "heldout")
    counts = subset_counts or sorted(
        {len(scored)} | {m for m in (8, 12, 16, 24, 32, 48, 64) if m < len(scored)}
    )
    base = {
        b: np.load(outdir / "scores" / b / "scores.npy", mmap_mode="r")
        for b in baselines
        if (outdir / "scores" / b / "scores.npy").exists()
    }
    lams = [float(v) for v in lambdas]
    out = []
    for c in [c for c in (1, 2, 4, 8, 16) if c <= len(models)] + (
        [len(models)] if len(models) not in (1, 2, 4, 8, 16) else []
    ):
        all_scores = trak_scores_multi(train[:c], target[:c], lams)
        lam, _ = select_lambda(
            lams, lambda v, a=all_scores: a[lams.index(v)], masks[heldout], f[..., heldout]
        )
        scores = all_scores[lams.index(lam)]
        for m in counts:
            cols = scored[:m]
            used = {int(rows[i]) for i in (*cols, *heldout)}
            wall, cpu = job_cost(outdir, c, used)
            mean, half, decisive = step_summary(scores, masks[cols], f[..., cols], n_boot, seed)
            row = {
                "models": c, "scored_subsets": m, "heldout_subsets": len(heldout),
                "lambda": lam, "job_s": round(wall), "cpu_s": round(cpu),
                f"{method}_lds": round(mean, 4), f"{method}_ci_halfwidth": round(half, 4),
                "steps_ci_above_0": decisive, "steps": f.shape[1],
            }  # fmt: skip
            for b, s in base.items():
                row[f"{b}_lds"] = round(step_summary(s, masks[cols], f[..., cols], 1, seed)[0], 4)
            out.append(row)
            print(row, flush=True)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", help="a finished LDS run's outdir (e.g. results/exp1)")
    parser.add_argument("--method", default="trak")
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()
    frame = frontier(args.outdir, args.method)
    out = Path(args.out) / f"lds_frontier_{Path(args.outdir).name}_{args.method}.csv"
    save_csv(out, frame)
    print(frame.to_markdown(index=False))


if __name__ == "__main__":
    main()
