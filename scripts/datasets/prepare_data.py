"""Rule prepare_data: write {DATA}/train.npz, test.npz and manifest.json (stepattr.datasets)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.datasets.jobs import run_prepare_data  # noqa: E402

run_prepare_data(smk)
