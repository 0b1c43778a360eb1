"""Rule pipeline_transitions: the pretrained pipeline's trajectories completed from each grid
step and read by a CLIP zero-shot detector -> {outdir}/pipeline_transitions/curves.csv,
intervals.csv, tables/pipeline_transitions.md, figures/pipeline_transitions.png
(stepattr.stable_diffusion.pretrained_curves)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.stable_diffusion.jobs import run_pipeline_transitions  # noqa: E402

run_pipeline_transitions(smk)
