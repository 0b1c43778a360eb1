"""Rule export_pipeline: full_0, the autoencoder and the text encoder as one
StableDiffusionPipeline folder -> {OUT}/pipeline/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.stable_diffusion.jobs import run_export_pipeline  # noqa: E402

run_export_pipeline(smk)
