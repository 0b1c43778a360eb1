"""Rule pipeline_transitions: the pretrained pipeline's trajectories completed from each grid
step and read by a CLIP zero-shot detector -> {outdir}/pipeline_transitions/curves.csv,
intervals.csv, tables/pipeline_transitions.md, figures/pipeline_transitions.png
(stepattr.stable_diffusion.pretrained_curves)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.io import atomic_path, save_csv, save_text  # noqa: E402
from stepattr.core.provenance import describe_config  # noqa: E402
from stepattr.stable_diffusion.export import load_pipeline  # noqa: E402
from stepattr.stable_diffusion.figure import pipeline_transitions_figure  # noqa: E402
from stepattr.stable_diffusion.pretrained_curves import (  # noqa: E402
    check_prompts,
    features_from_config,
    interval_rows,
    load_zero_shot,
    pipeline_transitions,
    summary_rows,
)

torch.set_num_threads(smk.threads)
p = smk.params
cfg = p.transitions
device = resolve_device(p.device)
pipeline_dir = Path(smk.input.pipeline[0]).parent  # inputs: the folders' index / config files
clip_dir = Path(smk.input.clip[0]).parent
pipeline = load_pipeline(pipeline_dir, device)
check_prompts(pipeline, cfg["prompts"])
detector = load_zero_shot(clip_dir, features_from_config(cfg["features"]), device)
curves, images = pipeline_transitions(pipeline, detector, cfg, p.grid, progress=True)
intervals = interval_rows(curves)
save_csv(smk.output.curves, curves)
save_csv(smk.output.intervals, intervals)
summary = summary_rows(intervals)
save_text(
    smk.output.markdown,
    f"Feature transitions of the pretrained pipeline ({describe_config(p.provenance)}): "
    f"{cfg['trajectories']} trajectories per prompt, DDPM ancestral sampling in "
    f"{cfg['inference_steps']} steps at guidance {cfg['guidance']} (pipeline.transitions.seed "
    f"{cfg['seed']}); from each grid step's x_t, {cfg['completions']} completions, decoded and "
    f"read by {detector.name} (zero-shot choice among each feature's prompts). P(feature | x_t) "
    "is the share of completions whose choice is the trajectory's own final choice; the "
    "steepest-rise interval is the adjacent pair of grid steps with the largest increase. "
    f"Inputs: {pipeline_dir}, {clip_dir}; per-step curves with 95% Wilson intervals in "
    f"{smk.output.curves}.\n\n"
    + summary.to_markdown(index=False, floatfmt=".3f")
    + "\n\n## Per trajectory\n\n"
    + intervals.to_markdown(index=False, floatfmt=".3f")
    + "\n",
)
figure = pipeline_transitions_figure(
    curves,
    intervals,
    images["final"].numpy(),
    images["x_t"].numpy(),
    int(cfg["figure_trajectories"]),
)
with atomic_path(smk.output.figure) as tmp:
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
print(summary.to_string(index=False))
