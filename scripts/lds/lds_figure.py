"""Rule lds_figure: LDS against denoising step, one line per method, CI bands."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.lds.jobs import run_lds_figure  # noqa: E402

run_lds_figure(smk)
