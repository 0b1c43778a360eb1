"""Rule sample_preview: images from full_0 for the quality check -> preview.npy + preview.png."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.targets.jobs import run_sample_preview  # noqa: E402

run_sample_preview(smk)
