"""Rule lds: per-step and D-TRAK-protocol LDS tables of every method (CSV + Markdown)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.lds.jobs import run_lds_tables  # noqa: E402

run_lds_tables(smk)
