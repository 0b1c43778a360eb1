"""Rule removal_mask: the training examples one removal rule takes out for one pair and k."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.jobs import run_removal_mask  # noqa: E402

run_removal_mask(smk)
