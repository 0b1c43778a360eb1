"""LDS tables (long CSV, wide Markdown) and the LDS-against-step figure.

Two protocols over the same subset models:

- per step (journey-TRAK): ground truth ``f_t`` at each grid step, scores of that step;
- D-TRAK: ground truth the diffusion loss of the final image averaged over timesteps; since it
  attributes the whole loss, the prediction uses each method's scores averaged over the grid
  steps (for TRAK methods, the step-averaged scores; the grid is a Riemann sum over t).

Every LDS is reported over all targets and per target set (generated, validation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from stepattr.core.provenance import describe_config
from stepattr.lds.metric import (
    LDS,
    LdsSettings,
    bootstrap_ceiling,
    bootstrap_lds,
    bootstrap_lds_difference,
    predicted_outputs,
)

CEILING = "ceiling"  # the retraining ceiling's rows in the LDS tables (method column)
CEILING_NOTE = (
    "- retraining ceiling (rows 'ceiling', where subsets have >= 2 seeds): per target, Spearman "
    "across subsets of one seed's output with the mean of the other seeds', averaged over the "
    "seed left out (Mlodozeniec et al.'s exact retraining), same bootstrap; methods are scored "
    "against the mean of all seeds"
)


def _target_groups(target_set: np.ndarray) -> list[tuple[str, np.ndarray]]:
    groups = [("all", np.ones(len(target_set), dtype=bool))]
    names = list(dict.fromkeys(target_set.tolist()))
    if len(names) > 1:
        groups += [(name, target_set == name) for name in names]
    return groups


def _rows(
    method: str,
    predicted: np.ndarray,
    actual: np.ndarray,
    steps: Sequence[int] | None,
    target_set: np.ndarray,
    n_boot: int,
    seed: int,
    level: float,
) -> list[dict]:
    """Bootstrap rows for predicted and actual outputs (m, G, M) per target group and step
    (``steps=None``: one column)."""

    def lds(keep: np.ndarray, g: int) -> LDS:
        return bootstrap_lds(predicted[keep, g], actual[keep, g], n_boot, seed, level)

    return _grouped_rows(method, lds, predicted.shape[1], steps, target_set)


def _grouped_rows(
    method: str,
    statistic: Callable[[np.ndarray, int], LDS],
    columns: int,
    steps: Sequence[int] | None,
    target_set: np.ndarray,
) -> list[dict]:
    """Rows of ``statistic(target mask, column)`` per target group and column (a grid step,
    or the single column of the D-TRAK protocol where ``steps`` is None)."""
    rows = []
    for set_name, keep in _target_groups(target_set):
        for g in range(columns):
            res = statistic(keep, g)
            step = {} if steps is None else {"step": int(steps[g])}
            rows.append({"method": method, "target_set": set_name, **step, **asdict(res)})
    return rows


def ceiling_rows(
    f_by_seed: np.ndarray,
    dtrak_by_seed: np.ndarray | None,
    grid: Sequence[int],
    target_set: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[list[dict], list[dict]]:
    """The retraining ceiling's per-step and D-TRAK-protocol rows (method ``ceiling``):
    :func:`stepattr.lds.metric.bootstrap_ceiling` of ``f_by_seed`` (m, G, M, s) and
    ``dtrak_by_seed`` (m, M, s), per target group; none where s < 2, and no D-TRAK-protocol
    rows where ``dtrak_by_seed`` is None."""
    if f_by_seed.shape[-1] < 2:
        return [], []

    def per_step(keep: np.ndarray, g: int) -> LDS:
        return bootstrap_ceiling(f_by_seed[keep, g], n_boot, seed, level)

    def whole(keep: np.ndarray, _: int) -> LDS:
        return bootstrap_ceiling(dtrak_by_seed[keep], n_boot, seed, level)

    steps = _grouped_rows(CEILING, per_step, len(grid), list(grid), target_set)
    if dtrak_by_seed is None:
        return steps, []
    return steps, _grouped_rows(CEILING, whole, 1, None, target_set)


def noise_bound(agreement: float, seeds: int) -> float:
    """The LDS a perfect predictor of a subset's expected output reaches, about, against the
    mean of ``seeds`` retrained models whose outputs agree at ``agreement`` (r, one seed
    against another): sqrt(s r / (1 + (s - 1) r)), Spearman-Brown then attenuation (Pearson's
    algebra, an approximation for Spearman). r itself is no bound: against a mean of s >= 2
    seeds a method can exceed it."""
    return float(np.sqrt(seeds * agreement / (1 + (seeds - 1) * agreement)))


def ceiling_fractions(frame: pd.DataFrame, labels: Mapping[str, str], seeds: int) -> list[str]:
    """Markdown lines: each method's mean LDS over the columns (all targets) as a share of the
    noise bound that the ceiling's mean implies (:func:`noise_bound`); empty without a
    ceiling row."""
    data = frame[frame["target_set"] == "all"]
    ceiling = data.loc[data["method"] == CEILING, "lds"].mean()
    if not np.isfinite(ceiling):
        return []
    title = ["## Against the noise bound", ""]
    if ceiling <= 0:
        return title + [
            f"The seeds do not agree on average (ceiling mean {ceiling:+.3f} over the columns, "
            "all targets): here the ground truth is mostly training noise, and no share is "
            "given.",
            "",
        ]
    bound = noise_bound(ceiling, seeds)
    lines = title + [
        f"One seed's outputs predict another's at r = {ceiling:.3f} (the ceiling's mean over "
        f"the columns, all targets). A perfect predictor of a subset's expected output would "
        f"reach about sqrt(s r / (1 + (s - 1) r)) = {bound:.3f} against the mean of the s = "
        f"{seeds} seeds the methods are scored against (Spearman-Brown, then attenuation).",
        "",
        "| method | mean LDS | share of the noise bound |",
        "|---|---:|---:|",
    ]
    for method, part in data[data["method"] != CEILING].groupby("method", sort=False):
        mean = part["lds"].mean()
        lines.append(f"| {labels.get(method, method)} | {mean:+.3f} | {mean / bound:.0%} |")
    return lines + [""]


def ground_truth_comparison(
    steps: pd.DataFrame, fresh: pd.DataFrame, labels: Mapping[str, str]
) -> list[str]:
    """Markdown lines: each method's per-step LDS (all targets) against the featurizer's own
    noises and against fresh ones, side by side: whether a method's LDS comes from fitting
    the very noise draws its features were computed with. Empty where ``fresh`` is."""
    if fresh.empty:
        return []
    lines = [
        "## Against fresh noise",
        "",
        "The tables above score f_t under the R noises the features were computed with (the "
        "linearised function itself); here f_t is also computed under R fresh noises per "
        "target and step (journey-TRAK's ground truth, `lds_fresh_noise.csv`). All targets:",
        "",
        "| method | mean LDS, featurizer's noise | steps CI > 0 | mean LDS, fresh noise "
        "| steps CI > 0 |",
        "|---|---:|---:|---:|---:|",
    ]
    by_truth = [f[f["target_set"] == "all"] for f in (steps, fresh)]
    for method in dict.fromkeys(by_truth[0]["method"]):
        cells = []
        for part in by_truth:
            rows = part[part["method"] == method]
            above = int((rows["ci_low"] > 0).sum())
            cells += [f"{rows['lds'].mean():+.3f}", f"{above} of {len(rows)}"]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return lines + [""]


def tuning_curves(records: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Markdown lines: each tuned method's held-out LDS at every grid value, per step and on
    the whole loss, the chosen value in bold: whether a choice is clear or noise.

    ``records[method] = (key, record)``, key "lambda" or "damping" and record the method's
    ``<key>_record`` (:func:`stepattr.lds.metric.select_lambda`'s, with its ``whole_loss``).
    """
    if not records:
        return []
    lines = ["## Held-out tuning curves", ""]
    for key in dict.fromkeys(k for k, _ in records.values()):
        tuned = {m: r for m, (k, r) in records.items() if k == key}
        grid = sorted({c[key] for r in tuned.values() for c in r["heldout_lds"]})
        rows = next(iter(tuned.values())).get("heldout_rows", [])
        lines += [
            f"Held-out LDS against {key} (mean over steps; whole loss: D-TRAK's protocol), on "
            f"the {len(rows)} held-out subsets that alone choose it; the choice in bold:",
            "",
            "| method | protocol | " + " | ".join(f"{v:g}" for v in grid) + " |",
            "|---|---|" + "---:|" * len(grid),
        ]
        for method, record in tuned.items():
            for protocol, choice in (("per step", record), ("whole loss", record["whole_loss"])):
                by_value = {c[key]: c["lds"] for c in choice["heldout_lds"]}
                cells = [
                    "" if v not in by_value
                    else (f"**{by_value[v]:+.3f}**" if v == choice[key] else f"{by_value[v]:+.3f}")
                    for v in grid
                ]  # fmt: skip
                lines.append(f"| {method} | {protocol} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def step_lds_rows(
    method: str,
    scores: np.ndarray,
    masks: np.ndarray,
    losses: np.ndarray,
    grid: Sequence[int],
    target_set: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> list[dict]:
    """Per-step LDS rows of one method: scores (m, G, n), losses (m, G, M)."""
    predicted = predicted_outputs(masks, scores)
    actual = -np.asarray(losses, dtype=np.float64)
    return _rows(method, predicted, actual, list(grid), target_set, n_boot, seed, level)


def dtrak_lds_rows(
    method: str,
    scores: np.ndarray,
    masks: np.ndarray,
    losses: np.ndarray,
    target_set: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> list[dict]:
    """D-TRAK-protocol LDS rows of one method: its whole-loss scores (m, n) against the final
    images' diffusion losses (m, M)."""
    predicted = predicted_outputs(masks, np.asarray(scores, dtype=np.float64))
    actual = -np.asarray(losses, dtype=np.float64)
    return _rows(method, predicted[:, None], actual[:, None], None, target_set, n_boot, seed, level)


def paired_lds_rows(
    method: str,
    reference: str,
    scores: np.ndarray,
    reference_scores: np.ndarray,
    masks: np.ndarray,
    losses: np.ndarray,
    grid: Sequence[int],
    target_set: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> list[dict]:
    """Per-step rows of LDS(method) - LDS(reference), paired bootstrap CI per target group."""
    predicted = predicted_outputs(masks, scores)
    predicted_ref = predicted_outputs(masks, reference_scores)
    actual = -np.asarray(losses, dtype=np.float64)
    rows = []
    for set_name, keep in _target_groups(target_set):
        for g, step in enumerate(grid):
            res = bootstrap_lds_difference(
                predicted[keep, g], predicted_ref[keep, g], actual[keep, g], n_boot, seed, level
            )
            rows.append(
                {"method": method, "reference": reference, "target_set": set_name,
                 "step": int(step), **asdict(res)}
            )  # fmt: skip
    return rows


def paired_markdown(frame: pd.DataFrame, header: Sequence[str], labels: Mapping[str, str]) -> str:
    """Rows: methods; cells 'difference [lo, hi]' against the reference, per target group."""
    if frame.empty:
        return "# LDS difference\n\nNo reference method (TRAK, loss) among this run's methods.\n"
    reference = labels.get(frame["reference"].iloc[0], frame["reference"].iloc[0])
    note = (
        f"- cells: LDS(method) - LDS({reference}) on the same subsets and targets, with a paired "
        "bootstrap CI (each replicate resamples subsets and targets once for both methods); a "
        f"CI above 0 means the method predicts retraining better than {reference}"
    )
    cells = frame.rename(columns={"difference": "lds"}).assign(n_excluded=0)
    title = f"LDS difference against {reference}, per denoising step"
    return lds_markdown(cells, title, [*header, note], labels)


def _cell(row: pd.Series) -> str:
    if not np.isfinite(row["lds"]):
        return "n/a"
    return f"{row['lds']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _wide(part: pd.DataFrame, column: str, labels: Mapping[str, str]) -> list[str]:
    cols = list(dict.fromkeys(part[column]))
    names = [f"t={c}" if column == "step" else str(c) for c in cols]
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(cols)]
    for method in dict.fromkeys(part["method"]):
        cells = part[part["method"] == method].set_index(column)
        row = [_cell(cells.loc[c]) if c in cells.index else "" for c in cols]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(row) + " |")
    return lines + [""]


def lds_markdown(
    frame: pd.DataFrame,
    title: str,
    header: Sequence[str],
    labels: Mapping[str, str],
    seeds: int = 1,
) -> str:
    """Rows: methods; cells 'LDS [lo, hi]' (95% bootstrap CI over subsets and targets).

    Per-step frames: columns are steps, one section per target group. D-TRAK frames (no
    ``step`` column): columns are the target groups.
    """
    lines = [f"# {title}", "", *header, ""]
    if "step" in frame.columns:
        for name in dict.fromkeys(frame["target_set"]):
            lines += [f"## targets: {name}", ""]
            lines += _wide(frame[frame["target_set"] == name], "step", labels)
    else:
        lines += _wide(frame, "target_set", labels)
    lines += ceiling_fractions(frame, labels, seeds)
    excluded = int(frame["n_excluded"].sum())
    if excluded:
        lines.append(
            f"{excluded} undefined per-target correlations (constant vectors) were excluded."
        )
    return "\n".join(lines) + "\n"


def lds_header(
    provenance: Mapping[str, Any],
    seeds: Mapping[str, int],
    subsets: Mapping[str, Any],
    lds_cfg: LdsSettings,
    resamples: int,
    target_counts: Mapping[str, int],
    lambdas: Mapping[str, Any],
    inputs: Sequence[str],
) -> list[str]:
    """What a reader needs to recompute a table: config, seeds, subsets, protocol, inputs."""
    return [
        f"- config: {describe_config(provenance)}",
        "- seeds: " + ", ".join(f"{k} {v}" for k, v in seeds.items()),
        f"- subsets: {subsets['count']} scored x {subsets['seeds']} model(s) each (alpha "
        f"{subsets['alpha']}, {subsets['train_steps']} training steps); {subsets['heldout']} "
        "held out, used only to choose lambda and damping",
        "- targets: " + ", ".join(f"{n} {name}" for name, n in target_counts.items()),
        f"- LDS: Spearman(masks @ scores, -loss) per target across subsets, mean over targets; "
        f"{lds_cfg.ci_level:.0%} two-way percentile bootstrap CI resampling subsets and "
        f"targets ({lds_cfg.bootstrap} resamples, seed {lds_cfg.seed})",
        f"- ground truth f_t: R = {resamples} noises per target and step, the same for every "
        f"model; D-TRAK loss: {lds_cfg.dtrak_draws} uniform (t, noise) draws per target",
        "- lambda / damping (chosen on held-out subsets): "
        + (", ".join(f"{m} {lam}" for m, lam in lambdas.items()) or "none"),
        "- inputs: " + ", ".join(inputs),
    ]


# drawn in every panel: the retraining ceiling (where subsets have >= 2 seeds) and two baselines
REFERENCES = {
    CEILING: ("tab:green", "-"),
    "random": ("0.45", "--"),
    "pixel": ("tab:orange", ":"),
}


def plot_lds(
    frame: pd.DataFrame, path: str | os.PathLike, labels: Mapping[str, str], title: str
) -> None:
    """LDS against step (all targets) as small multiples: one panel per method with its CI
    band, the random and pixel baselines drawn in every panel for reference, and in each
    panel's title the mean over steps and the steps whose CI excludes 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from stepattr.core.io import atomic_path

    data = frame[frame["target_set"] == "all"]
    by_method = {m: part.sort_values("step") for m, part in data.groupby("method", sort=False)}
    panels = [m for m in by_method if m not in REFERENCES] or list(by_method)
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows + 0.6), dpi=150, sharex=True,
        sharey=True, squeeze=False,
    )  # fmt: skip
    for ax, method in zip(axes.flat, panels, strict=False):
        for ref, (color, style) in REFERENCES.items():
            if ref in by_method and ref != method:
                part = by_method[ref]
                ax.plot(
                    part["step"], part["lds"], color=color, ls=style, lw=1,
                    label=labels.get(ref, ref),
                )  # fmt: skip
                ax.fill_between(
                    part["step"], part["ci_low"], part["ci_high"], color=color, alpha=0.08
                )
        part = by_method[method]
        ax.plot(part["step"], part["lds"], color="tab:blue", marker="o", ms=3, lw=1.5)
        ax.fill_between(part["step"], part["ci_low"], part["ci_high"], color="tab:blue", alpha=0.2)
        ax.axhline(0.0, color="0.3", lw=0.6)
        above = int((part["ci_low"] > 0).sum())
        ax.set_title(
            f"{labels.get(method, method)}\nmean {part['lds'].mean():+.2f}; CI > 0 at "
            f"{above}/{len(part)} steps",
            fontsize=8,
        )
    axes.flat[0].invert_xaxis()  # shared: every panel runs from high t to 0
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step t (sampling runs high t -> 0)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("LDS", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    sns.despine(fig)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
