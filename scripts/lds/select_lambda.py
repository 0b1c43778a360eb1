"""Rule select_lambda: the TRAK lambda with the best mean LDS over steps on held-out subsets."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.lds.jobs import run_select_lambda  # noqa: E402

run_select_lambda(smk)
