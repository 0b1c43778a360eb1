"""Rule lds: per-step and D-TRAK-protocol LDS tables of every method (CSV + Markdown)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from stepattr.core.io import load_json, save_csv, save_text  # noqa: E402
from stepattr.lds.ground_truth import load_subset_outputs_by_seed  # noqa: E402
from stepattr.lds.jobs import lds_frames  # noqa: E402
from stepattr.lds.tables import (  # noqa: E402
    CEILING,
    CEILING_NOTE,
    ceiling_rows,
    lds_header,
    lds_markdown,
    paired_markdown,
)
from stepattr.targets.sets import load_target_sets  # noqa: E402
from stepattr.training.subsets import load_masks  # noqa: E402

targets = load_target_sets(smk.input.targets, smk.params.target_sets)
rows, f_by_seed, dtrak_by_seed = load_subset_outputs_by_seed(
    smk.input.outputs, smk.params.scored_models, targets.target_id
)
f, dtrak = f_by_seed.mean(axis=-1), dtrak_by_seed.mean(axis=-1)  # a subset's truth: its seeds' mean
masks = load_masks(smk.input.masks, rows)
cfg = smk.params.lds
score_dirs = {
    Path(p).parent.name: Path(p).parent for p in smk.input.scores if Path(p).name == "scores.npy"
}
boot = (cfg["bootstrap"], cfg["seed"], cfg["ci_level"])
steps, whole, paired, labels = lds_frames(
    score_dirs, targets, masks, f, dtrak, *boot, reference=smk.params.reference
)
ceiling_steps, ceiling_whole = ceiling_rows(
    f_by_seed, dtrak_by_seed, targets.grid, targets.target_set, *boot
)
if ceiling_steps:
    n_seeds = f_by_seed.shape[-1]
    labels[CEILING] = f"retraining ceiling (1 seed vs the other {n_seeds - 1})"
    steps = pd.concat([pd.DataFrame(ceiling_steps), steps], ignore_index=True)
    whole = pd.concat([pd.DataFrame(ceiling_whole), whole], ignore_index=True)
lambdas = {}
for method, directory in score_dirs.items():
    meta = load_json(f"{directory}/meta.json")
    for key, unit in (("lambda", ""), ("damping", " x mean eigenvalue")):
        if meta.get(key) is not None:
            record = meta.get(f"{key}_record", {})
            edges = [r.get("grid_edge") for r in (record, record.get("whole_loss", {}))]
            lambdas[method] = (
                f"{key} {meta[key]:g}{unit}"
                + (f" ({edges[0]} of the grid)" if edges[0] else "")
                + f"; whole loss {record['whole_loss'][key]:g}"
                + (f" ({edges[1]} of the grid)" if edges[1] else "")
            )
header = lds_header(
    smk.params.provenance,
    smk.params.seeds,
    smk.params.subsets,
    cfg,
    smk.params.resamples,
    {name: int((targets.target_set == name).sum()) for name in smk.params.target_sets},
    lambdas,
    [
        smk.input.masks,
        f"{len(smk.input.outputs)} files like {smk.input.outputs[0]}",
        f"{Path(smk.input.scores[0]).parent.parent}/<method>/scores.npy",
    ],
)
if ceiling_steps:
    header.append(CEILING_NOTE)
for frame in (steps, whole, paired):
    frame.insert(1, "label", frame["method"].map(labels))
print(steps.to_string())
print(whole.to_string())
save_csv(smk.output.csv, steps)
save_csv(smk.output.dtrak_csv, whole)
save_text(smk.output.md, lds_markdown(steps, "LDS per denoising step", header, labels))
dtrak_header = header + [
    "- D-TRAK protocol: ground truth = diffusion loss of the final image averaged over "
    "timesteps; prediction = each method's whole-loss scores (its features, or images, of the "
    "final image at the grid's timesteps, averaged), with its own held-out lambda or damping"
]
save_csv(smk.output.paired_csv, paired)
save_text(smk.output.paired_md, paired_markdown(paired, header, labels))
save_text(smk.output.dtrak_md, lds_markdown(whole, "LDS, D-TRAK protocol", dtrak_header, labels))
