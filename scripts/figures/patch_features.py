"""Rule patch_features: masked target features of the patch targets for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import run_patch_features  # noqa: E402

run_patch_features(smk)
