"""Rule counterfactual_eval: f_t and P(same feature | x_t) of one model on its pairs."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.jobs import run_counterfactual_eval  # noqa: E402

run_counterfactual_eval(smk)
