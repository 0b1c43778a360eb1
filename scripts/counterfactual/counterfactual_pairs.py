"""Rule counterfactual_pairs: each configured (target, step) pair with its step and interval."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.jobs import run_counterfactual_pairs  # noqa: E402

run_counterfactual_pairs(smk)
