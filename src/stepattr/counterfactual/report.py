"""Counterfactual table (CSV + Markdown) and figure: what removing k examples changed.

Per pair (target, step) and removed model, against the reference model (see
:mod:`stepattr.counterfactual.removal`):

- ``df = f_t(removed) - f_t(reference)``: positive = the target's loss at t went up, i.e. the
  model moved away from the target; ``df_rel`` is the same in % of ``f_t(reference)``;
- ``predicted_df``: the sum of the removed examples' TRAK scores, TRAK's linear prediction
  of ``df`` (a score is ~ f(without i) - f(with i));
- P(same feature | x_t) under (a) interval replacement and (b) the rest of the trajectory.

Rows of the summary are (rule, fraction): the mean of ``df`` and ``df_rel`` over pairs with a
Student-t 95% CI over pairs (n/a with one pair), and P(same feature) pooled over the pairs'
completions with a Wilson 95% CI (uncertainty of the completions, not of the choice of
targets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from stepattr.core.names import parse_removed_model_id
from stepattr.core.provenance import describe_config
from stepattr.detectors.wilson import wilson_interval

if TYPE_CHECKING:  # removal imports torch; this module stays light
    from stepattr.counterfactual.removal import CounterfactualSettings

SCHEMES = {"interval": "(a) retrained on the interval only", "rest": "(b) retrained from t on"}
LEVEL = 0.95


def removal_summary(
    model_ids: Sequence[str], tables: Sequence[str | os.PathLike], fractions: Sequence[float]
) -> pd.DataFrame:
    """model_id, rule, fraction, k and predicted_df (sum of TRAK scores) per removed model,
    from the removal tables written by :func:`stepattr.counterfactual.removal.write_removal`."""
    if len(model_ids) != len(tables):
        raise ValueError(f"{len(tables)} removal tables for {len(model_ids)} removed models")
    rows = []
    for model_id, path in zip(model_ids, tables, strict=True):
        rule, _, j = parse_removed_model_id(model_id)
        table = pd.read_csv(path)
        rows.append(
            {
                "model_id": model_id,
                "rule": rule,
                "fraction": float(fractions[j]),
                "k": len(table),
                "predicted_df": float(table["trak_score"].sum()),
            }
        )
    return pd.DataFrame(rows)


def pair_changes(evals: pd.DataFrame, removals: pd.DataFrame, reference_id: str) -> pd.DataFrame:
    """One row per removed model (and its pair): its values next to the reference's.

    ``evals``: rows of :func:`stepattr.counterfactual.removal.evaluate_removal_model` for every
    removed model and the reference; ``removals``: model_id, rule, fraction, k, predicted_df per
    removed model.
    """
    ref = evals[evals["model_id"] == reference_id].set_index("pair")
    tested = evals[evals["model_id"] != reference_id].merge(removals, on="model_id", how="inner")
    if len(tested) != len(removals):
        raise ValueError(
            f"{len(removals)} removed models but evaluations for {len(tested)} of them"
        )
    missing = set(tested["pair"]) - set(ref.index)
    if missing:
        raise ValueError(
            f"the reference {reference_id} was not evaluated on pairs {sorted(missing)}"
        )
    base = ref.loc[tested["pair"]]
    out = tested.assign(
        f_ref=base["f"].to_numpy(),
        ref_same_interval=base["same_interval"].to_numpy(),
        ref_same_rest=base["same_rest"].to_numpy(),
    )
    if (base["n"].to_numpy() != out["n"].to_numpy()).any():
        raise ValueError("removed and reference models were evaluated with different N")
    out["df"] = out["f"] - out["f_ref"]
    out["df_rel"] = 100.0 * out["df"] / out["f_ref"]
    columns = [
        "rule", "fraction", "k", "pair", "target_id", "step", "t_low", "feature", "model_id",
        "f_ref", "f", "df", "df_rel", "predicted_df", "n", "same_interval", "same_rest",
        "ref_same_interval", "ref_same_rest",
    ]  # fmt: skip
    return (
        out[columns].sort_values(["rule", "fraction", "pair"], kind="stable").reset_index(drop=True)
    )


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean with a Student-t CI; the CI is NaN with fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_gap(per_pair: pd.DataFrame, rule: str, fraction: float, lead: str) -> tuple:
    """Mean and Student-t CI over pairs of ``df_rel(lead) - df_rel(rule)``, paired on the
    (target, step) pair: how much more the ``lead`` rule's removal moved f_t than ``rule``'s."""
    cols = ["pair", "df_rel"]
    at = per_pair[per_pair["fraction"] == fraction]
    both = at.loc[at["rule"] == lead, cols].merge(
        at.loc[at["rule"] == rule, cols], on="pair", suffixes=("_lead", "_rule")
    )
    if both.empty:
        return float("nan"), float("nan"), float("nan")
    return mean_ci(both["df_rel_lead"] - both["df_rel_rule"])


def summarize(per_pair: pd.DataFrame, rules: Sequence[str]) -> pd.DataFrame:
    """One row per (rule, fraction), rules in the given order, fractions ascending; the first
    rule (TRAK) is compared with every other one pair by pair (``gap_*`` columns)."""
    rows = []
    for rule in rules:
        part = per_pair[per_pair["rule"] == rule]
        for fraction, group in part.groupby("fraction", sort=True):
            row: dict[str, Any] = {
                "rule": rule,
                "fraction": float(fraction),
                "k": int(group["k"].max()),
                "pairs": len(group),
            }
            for col in ("df", "df_rel"):
                row[col], row[f"{col}_ci_low"], row[f"{col}_ci_high"] = mean_ci(group[col])
            row["predicted_df"] = float(group["predicted_df"].mean())
            row["gap"], row["gap_ci_low"], row["gap_ci_high"] = (
                paired_gap(per_pair, rule, float(fraction), rules[0])
                if rule != rules[0]
                else (float("nan"),) * 3
            )
            n = int(group["n"].sum())
            for scheme in SCHEMES:
                for prefix in ("", "ref_"):
                    hits = int(group[f"{prefix}same_{scheme}"].sum())
                    low, high = wilson_interval(hits, n)
                    name = f"{prefix}p_{scheme}"
                    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (
                        hits / n, float(low), float(high)
                    )  # fmt: skip
            row["completions"] = n
            row["models"] = " ".join(group["model_id"])
            rows.append(row)
    return pd.DataFrame(rows)


def _interval(value: float, low: float, high: float, fmt: str) -> str:
    ci = "" if not np.isfinite(low) else f" [{low:{fmt}}, {high:{fmt}}]"
    return f"{value:{fmt}}{ci}"


def counterfactual_markdown(summary: pd.DataFrame, header: Sequence[str]) -> str:
    """Rows rule x fraction; cells 'mean [95% CI]' (CI n/a over a single pair)."""
    lines = [
        "# Counterfactual check: remove k training examples, retrain, regenerate",
        "",
        *header,
        "",
        "| rule | fraction | k | pairs | Δf_t | Δf_t / f_t (%) | first rule minus this, "
        "paired (pp) | TRAK-predicted Δf_t | P(same) (a) | ref (a) | P(same) (b) | ref (b) "
        "| models |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        cells = [
            row.rule,
            f"{row.fraction:g}",
            str(row.k),
            str(row.pairs),
            _interval(row.df, row.df_ci_low, row.df_ci_high, ".4g"),
            _interval(row.df_rel, row.df_rel_ci_low, row.df_rel_ci_high, ".2f"),
            _interval(row.gap, row.gap_ci_low, row.gap_ci_high, "+.2f")
            if np.isfinite(row.gap)
            else "",
            f"{row.predicted_df:.4g}",
        ]
        for scheme in SCHEMES:
            cells.append(
                _interval(
                    getattr(row, f"p_{scheme}"),
                    getattr(row, f"p_{scheme}_ci_low"),
                    getattr(row, f"p_{scheme}_ci_high"),
                    ".2f",
                )
            )
            cells.append(f"{getattr(row, f'ref_p_{scheme}'):.2f}")
        cells.append(row.models)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def counterfactual_header(
    provenance: Mapping[str, Any],
    cf: CounterfactualSettings,
    recipe: Mapping[str, Any],
    pairs: pd.DataFrame,
    detector: str,
    inputs: Sequence[str],
) -> list[str]:
    """What a reader needs to recompute the table: config, seeds, models, protocol, inputs."""
    listed = "; ".join(
        f"pair {p.pair}: generated target {p.target_id} at t = {p.step} (interval "
        f"{p.t_low} < s <= {p.step})"
        for p in pairs.itertuples(index=False)
    )
    return [
        f"- config: {describe_config(provenance)}",
        f"- retraining: {recipe['steps']} steps, seed {recipe['seed']} (full_0's recipe), "
        f"reference model {recipe['reference']}",
        f"- seeds: random removal {cf.seed}, completions {recipe['completion_seed']}, "
        f"f_t noises {recipe['output_seed']}",
        f"- pairs: {listed}",
        f"- f_t: loss output function, R = {recipe['resamples']} noises shared by every model; "
        "Δf_t = f_t(removed) - f_t(reference) (positive: the model moved away from the "
        "target); mean over pairs, Student-t 95% CI over pairs (n/a with one pair)",
        "- TRAK-predicted Δf_t: sum of the removed examples' TRAK scores (mean over pairs)",
        f"- P(same feature | x_t): N = {cf.completions} completions per pair and model "
        f"({recipe['completion_steps']}-step strided sampler, noises shared by every model), "
        f"feature = {detector} class of the target's final x0; (a) the model under test on "
        "the interval only, full_0 after it; (b) the model under test from t to 0; pooled "
        "over pairs, Wilson 95% CI over completions; ref = the reference model likewise",
        "- inputs: " + ", ".join(inputs),
    ]


def plot_counterfactual(
    summary: pd.DataFrame, path: str | os.PathLike, rules: Sequence[str], title: str
) -> None:
    """Change in f_t (%) and P(same feature) (a), (b) against k, one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from stepattr.core.io import atomic_path

    colors = dict(zip(rules, sns.color_palette("tab10", len(rules)), strict=False))
    ticks = summary.drop_duplicates("k").sort_values("k")
    position = {int(k): i for i, k in enumerate(ticks["k"])}
    labels = [
        f"{k}\n({100 * f:g}% of train)" for k, f in zip(ticks["k"], ticks["fraction"], strict=True)
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), dpi=150)
    panels = [
        ("df_rel", "Δf_t / f_t(reference)  (%)", None),
        ("p_interval", "P(same feature | x_t)", "ref_p_interval"),
        ("p_rest", "P(same feature | x_t)", "ref_p_rest"),
    ]
    titles = [
        "change in f_t (mean, 95% CI over pairs)",
        f"{SCHEMES['interval']} (Wilson 95% CI)",
        f"{SCHEMES['rest']} (Wilson 95% CI)",
    ]
    for ax, (col, ylabel, ref), panel_title in zip(axes, panels, titles, strict=True):
        for i, rule in enumerate(rules):
            part = summary[summary["rule"] == rule].sort_values("k")
            if part.empty:
                continue
            x = np.array([position[int(k)] for k in part["k"]]) + 0.1 * (i - (len(rules) - 1) / 2)
            y = part[col].to_numpy()
            low, high = part[f"{col}_ci_low"].to_numpy(), part[f"{col}_ci_high"].to_numpy()
            err = np.vstack([y - low, high - y])
            ax.errorbar(
                x, y, yerr=np.where(np.isfinite(err), err, 0), marker="o", ms=4, capsize=3,
                color=colors[rule], label=rule,
            )  # fmt: skip
        if ref is None:
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        else:
            ax.axhline(summary[ref].iloc[0], color="0.4", lw=0.8, ls="--", label="reference model")
            ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel("k = training examples removed")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=9)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title, fontsize=9)
    sns.despine(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
