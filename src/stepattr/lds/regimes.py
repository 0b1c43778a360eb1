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
    python -m stepattr.lds.regimes lambdas results/regimes/two_class trak 24 0.1 1 10 100
    python -m stepattr.lds.regimes lambdas results trak 20 0.01 1 100 --dims 256 512 1024
    python -m stepattr.lds.regimes compare results:dtrak results:trak 20   # paired a - b
    python -m stepattr.lds.regimes compare results:kfac results:pixel 20 --parts  # CI by axis
    python -m stepattr.lds.regimes steps results 20 kfac pixel --centred   # protocol variants
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
from stepattr.core.io import read_benchmark, save_csv
from stepattr.lds.ground_truth import (
    load_subset_outputs,
    load_subset_outputs_by_seed,
    subset_row_seed,
)
from stepattr.lds.metric import (
    RESAMPLED_AXES,
    bootstrap_ceiling,
    bootstrap_lds_difference,
    lds_per_target,
    mean_lds_over_steps,
    predicted_outputs,
    spearman_rows,
)
from stepattr.lds.tables import step_lds_rows
from stepattr.training.subsets import load_masks
from stepattr.trak.scores import trak_scores_multi
from stepattr.trak.storage import load_method_features, load_whole_loss

SCREEN_CONFIG = "config/regimes/screen.yaml"  # from the repository root, where Snakemake runs


def screen_targets(outdir: str, screen_config: str | Path = SCREEN_CONFIG) -> list[str]:
    """The output files a screen needs: every (subset, seed) model's f_t and D-TRAK loss, for
    the subsets and seeds that ``screen_config`` (the overlay the screen runs) sets."""
    import yaml

    subsets = yaml.safe_load(Path(screen_config).read_text())["subsets"]
    return [
        f"{outdir}/lds/outputs/subset_{j}_s{s}.npz"
        for j in range(subsets["count"])
        for s in range(subsets["seeds"])
    ]


def output_files(outdir: Path, all_seeds: bool = False) -> list[Path]:
    """A run's subset-output files: of the seeds that every subset row has (a screen's second
    seed on a few rows left out where the other rows have one), or with ``all_seeds`` the rows
    that have every seed any row has (the ceiling's: a full run grown from a screen)."""
    seeds: dict[int, dict[int, Path]] = {}
    for path in sorted((outdir / "lds" / "outputs").glob("subset_*_s*.npz")):
        row, seed = subset_row_seed(path.stem)
        seeds.setdefault(row, {})[seed] = path
    if not seeds:
        raise FileNotFoundError(f"{outdir / 'lds' / 'outputs'}: no subset outputs")
    if all_seeds:
        every = set.union(*(set(s) for s in seeds.values()))
        return [p for row in sorted(seeds) if set(seeds[row]) == every for p in seeds[row].values()]
    common = set.intersection(*(set(s) for s in seeds.values()))
    return [seeds[row][s] for row in sorted(seeds) for s in sorted(common)]


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
    paths = output_files(outdir, all_seeds=True)
    rows, f, dtrak = load_subset_outputs_by_seed(paths, [p.stem for p in paths])
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


def lambda_curves(
    outdir: str | Path,
    method: str,
    lambdas: Sequence[float],
    scored_rows: int,
    target_sets: Sequence[str] = ("generated", "validation"),
    baselines: Sequence[str] = ("pixel", "embedding"),
    proj_dims: Sequence[int] = (),
) -> pd.DataFrame:
    """A TRAK method's LDS against lambda on both protocols (per step: mean over steps; D-TRAK:
    whole-loss scores against the whole loss), on the held-out subsets (rows from
    ``scored_rows`` on: they alone may choose lambda) and, as a diagnostic only, on the scored
    ones; the run's ``baselines`` beside it (lambda NaN). Reads the subset outputs there are,
    so it also reads a run still in progress. Shows whether a choice is stable and whether the
    protocols want the same lambda. With ``proj_dims``, also at each smaller projection
    dimension k' (the features' first k' columns: a k'-column projection of the same kind),
    to read what the projection dimension costs without featurizing again."""
    outdir = Path(outdir)
    features = outdir / "features" / method
    models = sorted(p.name for p in features.glob("full_*"))
    train_paths = [features / mid / "train.npy" for mid in models]
    train, target, _ = load_method_features(
        train_paths, [features / mid / f"{name}.npy" for mid in models for name in target_sets]
    )
    _, whole_target, _ = load_method_features(
        train_paths,
        [features / mid / f"{name}_whole_loss.npy" for mid in models for name in target_sets],
    )
    paths = output_files(outdir)
    rows, f, dtrak = load_subset_outputs(paths, [p.stem for p in paths])
    masks = load_masks(outdir / "subsets" / "masks.npy", rows)
    heldout = rows >= scored_rows
    lams = [float(lam) for lam in lambdas]
    full = train[0].shape[-1]
    all_scores, named = [], []
    for k in [*proj_dims, full]:
        cut = [[a[..., :k] for a in arrays] for arrays in (train, target, whole_target)]
        per_step = trak_scores_multi(cut[0], cut[1], lams)
        all_scores += zip(per_step, trak_scores_multi(cut[0], cut[2], lams)[:, :, 0], strict=True)
        label = method if k == full else f"{method} k={k}"
        named += [(label, lam) for lam in lams]
    for name in baselines:
        path = outdir / "scores" / name / "scores.npy"
        if path.exists():
            scores = np.load(path, mmap_mode="r")
            all_scores.append((scores, load_whole_loss(path.with_name("whole_loss.npy"), scores)))
            named.append((name, float("nan")))
    out = []
    for (name, lam), (scores, whole) in zip(named, all_scores, strict=True):
        for part, keep in (("heldout", heldout), ("scored", ~heldout)):
            step = mean_lds_over_steps(scores, masks[keep], f[..., keep])
            loss = np.nanmean(lds_per_target(whole, masks[keep], dtrak[..., keep]))
            out.append(
                {"method": name, "lambda": lam, "subsets": f"{part} ({int(keep.sum())})",
                 "per_step": step, "dtrak": loss}
            )  # fmt: skip
    return pd.DataFrame(out)


def compare_runs(
    side_a: tuple[str | Path, str],
    side_b: tuple[str | Path, str],
    scored_rows: int,
    n_boot: int = 1000,
    seed: int = 0,
    parts: bool = False,
) -> pd.DataFrame:
    """LDS of two (run, method) sides on the same subsets, targets and subset outputs (two
    methods of one run, or one method in a run and in its copy rerun with one attribution
    setting changed), and the paired difference a - b with its two-way CI
    (:func:`stepattr.lds.metric.bootstrap_lds_difference`): per grid step and on D-TRAK's
    whole-loss protocol, on the scored subsets (rows below ``scored_rows``), each side's
    scores at the lambda (or damping) it chose. ``parts``: also the CI's half-width with only
    the subsets resampled and with only the targets (``half_subsets``, ``half_targets``):
    which of the two more of would narrow it."""
    runs = [Path(side_a[0]), Path(side_b[0])]
    paths = output_files(runs[0])
    rows, f, dtrak = load_subset_outputs(paths, [p.stem for p in paths])
    if runs[1].resolve() != runs[0].resolve():  # two runs: they must share the ground truth
        other = output_files(runs[1])
        _, f_b, dtrak_b = load_subset_outputs(other, [p.stem for p in other])
        if not (np.array_equal(f, f_b) and np.array_equal(dtrak, dtrak_b)):
            raise ValueError(f"{runs[0]} and {runs[1]} do not share their subset outputs")
    keep = rows < scored_rows
    masks = load_masks(runs[0] / "subsets" / "masks.npy", rows[keep])
    scores, whole = [], []
    for run, method in zip(runs, (side_a[1], side_b[1]), strict=True):
        path = run / "scores" / method / "scores.npy"
        scores.append(np.load(path, mmap_mode="r"))
        whole.append(load_whole_loss(path.with_name("whole_loss.npy"), scores[-1]))
    with np.load(paths[0]) as data:
        grid = data["grid"].tolist()
    truth = -f[..., keep]  # the LDS correlates predictions with -loss
    columns = [(str(t), [s[:, g] for s in scores], truth[:, g]) for g, t in enumerate(grid)]
    columns.append(("whole loss", whole, -dtrak[:, keep]))
    out = []
    for step, (a, b), actual in columns:
        pred_a, pred_b = predicted_outputs(masks, a), predicted_outputs(masks, b)
        diff = bootstrap_lds_difference(pred_a, pred_b, actual, n_boot, seed)
        out.append({
            "step": step, "lds_a": np.nanmean(spearman_rows(pred_a, actual)),
            "lds_b": np.nanmean(spearman_rows(pred_b, actual)), "a_minus_b": diff.difference,
            "ci_low": diff.ci_low, "ci_high": diff.ci_high, "targets": diff.n_targets,
        })  # fmt: skip
        for axis in RESAMPLED_AXES if parts else ():
            one = bootstrap_lds_difference(pred_a, pred_b, actual, n_boot, seed, resample=[axis])
            out[-1][f"half_{axis}"] = (one.ci_high - one.ci_low) / 2
    return pd.DataFrame(out)


def centre_over_targets(outputs: np.ndarray) -> np.ndarray:
    """(m, ..., M) outputs minus their mean over the targets (axis 0), per subset model: what
    moves every target together (training noise shared by all targets at high and low t)
    drops out, and what is left is each target's response relative to the others'."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs - outputs.mean(axis=0, keepdims=True)


def step_table(
    outdir: str | Path,
    methods: Sequence[str],
    scored_rows: int,
    ground_truth: str = "f",
    centred: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each method's per-step LDS (all targets, two-way CI) on the scored subsets below
    ``scored_rows``, against the per-step ground truth ``ground_truth`` (``f``, or ``f_fresh``
    under fresh noises), with ``centred`` both sides centred over the targets
    (:func:`centre_over_targets`): protocol variants and power (fewer rows of a larger run)
    read from a run's files without rerunning it."""
    outdir = Path(outdir)
    paths = output_files(outdir)
    rows, f, _ = load_subset_outputs(paths, [p.stem for p in paths], ground_truth=ground_truth)
    keep = rows < scored_rows
    masks = load_masks(outdir / "subsets" / "masks.npy", rows[keep])
    losses = f[..., keep]
    with np.load(paths[0]) as data:
        grid = data["grid"].tolist()
    # centring the scores over targets centres the predictions (masks @ scores is linear)
    centre = centre_over_targets if centred else np.asarray
    everyone = np.full(len(losses), "all")
    out = []
    for method in methods:
        scores = np.load(outdir / "scores" / method / "scores.npy")
        out += step_lds_rows(
            method, centre(scores), masks, centre(losses), grid, everyone, n_boot, seed
        )
    return pd.DataFrame(out)[["method", "step", "lds", "ci_low", "ci_high"]]


def regime_table(outdirs: Sequence[str | Path], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame([regime_row(d, n_boot, seed) for d in outdirs])


MARKDOWN_COLUMNS = {
    "regime": "regime",
    "classes": "classes",
    "n_train": "train images",
    "epochs": "epochs",
    "lr_schedule": "lr",
    "channels": "channels",
    "subsets": "subsets x seeds",
    "ceiling_mean": "ceiling, mean over steps",
    "ceiling_half_width": "CI half-width",
    "ceiling_steps_above_0": "steps CI > 0",
    "ceiling_dtrak": "ceiling, D-TRAK protocol",
    "subset_model_cpu_s": "CPU-s per subset model",
}


def markdown(table: pd.DataFrame) -> str:
    """The screen table's main columns as Markdown (docs/regimes.md)."""
    lines = [
        "| " + " | ".join(MARKDOWN_COLUMNS.values()) + " |",
        "|---|" + "---:|" * (len(MARKDOWN_COLUMNS) - 1),
    ]
    for _, row in table.iterrows():
        cells = {k: row[k] for k in MARKDOWN_COLUMNS}
        cells["subsets"] = f"{row['subsets']} x {row['seeds']}"
        cells["ceiling_dtrak"] = f"{row['ceiling_dtrak']:.2f} {row['ceiling_dtrak_ci']}"
        for key in ("ceiling_mean", "ceiling_half_width"):
            cells[key] = f"{row[key]:.2f}"
        cells["subset_model_cpu_s"] = f"{row['subset_model_cpu_s']:.0f}"
        lines.append("| " + " | ".join(str(v) for v in cells.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["targets"]:
        print(" ".join(screen_targets(argv[1].rstrip("/"))))
        return
    if argv[:1] == ["lambdas"]:  # <outdir> <method> <scored rows> <lambda> ... [--dims k ...]
        args, dims = argv[1:], []
        if "--dims" in args:
            at = args.index("--dims")
            args, dims = args[:at], [int(v) for v in args[at + 1 :]]
        outdir, method, scored, *lams = args
        curves = lambda_curves(
            outdir, method, [float(v) for v in lams], int(scored), proj_dims=dims
        )
        table = curves.pivot(
            index=["method", "lambda"], columns="subsets", values=["per_step", "dtrak"]
        )
        print(table.round(3).to_string())
        return
    if argv[:1] == ["compare"]:  # compare <outdir>:<method> <outdir>:<method> <rows> [--parts]
        side_a, side_b = (tuple(side.rsplit(":", 1)) for side in argv[1:3])
        table = compare_runs(side_a, side_b, int(argv[3]), parts="--parts" in argv)
        print(table.round(3).to_string(index=False))
        return
    if argv[:1] == ["steps"]:  # steps <outdir> <scored rows> <method> ... [--centred] [--fresh]
        flags = {"--centred", "--fresh"}
        outdir, scored, *methods = [a for a in argv[1:] if a not in flags]
        truth = "f_fresh" if "--fresh" in argv else "f"
        table = step_table(outdir, methods, int(scored), truth, "--centred" in argv)
        summary = table.groupby("method", sort=False).agg(
            mean=("lds", "mean"), steps_ci_above_0=("ci_low", lambda lo: int((lo > 0).sum()))
        )
        print(table.pivot(index="method", columns="step", values="lds").round(3).to_string())
        print(summary.round(3).to_string())
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdirs", nargs="+", help="screen runs (config/regimes/<regime>.yaml)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the table here (CSV)")
    parser.add_argument("--markdown", action="store_true", help="print docs/regimes.md's table")
    args = parser.parse_args(argv)
    table = regime_table(args.outdirs, args.bootstrap, args.seed)
    if args.out:
        save_csv(args.out, table)
    if args.markdown:
        print(markdown(table), end="")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
