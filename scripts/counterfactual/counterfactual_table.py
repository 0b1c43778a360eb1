"""Rule counterfactual_table: changes against the reference, per pair and per (rule, fraction)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.jobs import run_counterfactual_table  # noqa: E402

run_counterfactual_table(smk)
