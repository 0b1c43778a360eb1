"""Rule fit_influence_factors: K-FAC factors, eigenbases and EK-FAC eigenvalues of a full model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.influence.jobs import run_fit_factors  # noqa: E402

run_fit_factors(smk)
