"""The rule entry points of stage counterfactual (scripts/counterfactual/): each reads its rule's
snakemake object once and calls the stage's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from stepattr.core.diffusion import resolve_device
from stepattr.core.io import save_csv, save_text
from stepattr.counterfactual.removal import (
    CounterfactualSettings,
    evaluate_removal_model,
    resolve_pairs,
    write_removal,
)
from stepattr.counterfactual.report import (
    counterfactual_header,
    counterfactual_markdown,
    pair_changes,
    plot_counterfactual,
    removal_summary,
    summarize,
)
from stepattr.detectors.detector import load_detector
from stepattr.transitions.curves import TransitionsSettings, load_targets


def run_counterfactual_eval(smk: Any) -> None:
    """Rule counterfactual_eval: f_t and P(same feature | x_t) of one model on its pairs."""
    torch.set_num_threads(smk.threads)
    device = resolve_device(smk.params.device)
    tcfg = TransitionsSettings.from_config(smk.params.transitions)
    detector = load_detector(
        tcfg.detector, Path(smk.input.classifier).parent, smk.params.clip, device=device
    )
    pairs = pd.read_csv(smk.input.pairs)
    rows = evaluate_removal_model(
        smk.wildcards.model_id,
        Path(smk.input.model).parent,
        Path(smk.input.original).parent,
        smk.input.targets,
        pairs[pairs["pair"].isin(smk.params.pairs)],
        detector,
        resamples=int(smk.params.resamples),
        output_seed=int(smk.params.output_seed),
        completions=int(smk.params.completions),
        completion_steps=tcfg.completion_steps,
        completion_seed=tcfg.seed,
        batch_size=tcfg.batch_size,
        device=device,
        progress=True,
    )
    print(rows.to_string(index=False))
    save_csv(smk.output[0], rows)


def run_counterfactual_figure(smk: Any) -> None:
    """Rule counterfactual_figure: change in f_t and P(same feature) against k, per removal rule."""
    summary = pd.read_csv(smk.input[0])
    files = ", ".join(smk.params.provenance["config_files"])
    pairs = int(summary["pairs"].max())
    title = (
        f"Counterfactual check ({files}): retrained without k examples vs {smk.params.reference}, "
        f"{pairs} (target, step) pair(s)"
    )
    plot_counterfactual(summary, smk.output[0], smk.params.removal_rules, title)


def run_counterfactual_pairs(smk: Any) -> None:
    """Rule counterfactual_pairs: each configured (target, step) pair with its step and interval."""
    cfg = CounterfactualSettings.from_config(smk.params.counterfactual)
    targets = load_targets(smk.input.targets, ("grid", "target_id"))
    intervals = pd.read_csv(smk.input.intervals) if "intervals" in smk.input.keys() else None
    pairs = resolve_pairs(
        cfg.pairs, targets["grid"].tolist(), len(targets["target_id"]), intervals, cfg.delta
    )
    print(pairs.to_string(index=False))
    save_csv(smk.output[0], pairs)


def run_counterfactual_table(smk: Any) -> None:
    """Rule counterfactual_table: changes against the reference, per pair and per
    (rule, fraction)."""
    cfg = CounterfactualSettings.from_config(smk.params.counterfactual)
    recipe = smk.params.recipe
    evals = pd.concat([pd.read_csv(path) for path in smk.input.evals], ignore_index=True)
    removals = removal_summary(smk.params.removed_models, smk.input.removals, cfg.fractions)
    per_pair = pair_changes(evals, removals, recipe["reference"])
    summary = summarize(per_pair, cfg.rules)
    pairs = pd.read_csv(smk.input.pairs)
    header = counterfactual_header(
        smk.params.provenance,
        cfg,
        recipe,
        pairs,
        evals["detector"].iloc[0],
        [smk.input.pairs, f"{len(smk.input.evals)} files like {smk.input.evals[0]}",
         f"{len(smk.input.removals)} files like {smk.input.removals[0]}"],
    )  # fmt: skip
    print(per_pair.to_string(index=False))
    print(summary.to_string(index=False))
    save_csv(smk.output.per_pair, per_pair)
    save_csv(smk.output.csv, summary)
    save_text(smk.output.md, counterfactual_markdown(summary, header))


def run_removal_mask(smk: Any) -> None:
    """Rule removal_mask: the training examples one removal rule takes out for one pair and k."""
    removed = write_removal(
        rule=smk.wildcards.removal,
        pair=int(smk.wildcards.pair),
        fraction=float(smk.params.fraction),
        seed=int(smk.params.seed),
        pairs_path=smk.input.pairs,
        targets_path=smk.input.targets,
        train_path=smk.input.train,
        trak_paths=(smk.input.trak_scores, smk.input.trak_index, smk.input.trak_meta),
        rule_paths=(
            (smk.input.scores, smk.input.index, smk.input.meta)
            if "scores" in smk.input.keys()
            else None
        ),
        mask_path=smk.output.mask,
        table_path=smk.output.table,
    )
    print(removed.head(20).to_string(index=False))
    print(f"removed {len(removed)}; sum of TRAK scores {removed['trak_score'].sum():.6g}")
