"""Rule featurize_targets: TRAK features of one target set at every grid step for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import run_featurize_targets  # noqa: E402

run_featurize_targets(smk)
