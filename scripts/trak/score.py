"""Rule score: TRAK scores of one method from every full model's features, averaged."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import run_score  # noqa: E402

run_score(smk)
