"""Rule counterfactual_figure: change in f_t and P(same feature) against k, per removal rule."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.jobs import run_counterfactual_figure  # noqa: E402

run_counterfactual_figure(smk)
