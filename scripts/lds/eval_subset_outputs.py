"""Rule eval_subset_outputs: a subset model's f_t at every grid step and D-TRAK loss per target."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.lds.jobs import run_eval_subset_outputs  # noqa: E402

run_eval_subset_outputs(smk)
