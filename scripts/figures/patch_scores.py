"""Rule patch_scores: TRAK scores of the patch features with the method's lambda."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import run_patch_scores  # noqa: E402

run_patch_scores(smk)
