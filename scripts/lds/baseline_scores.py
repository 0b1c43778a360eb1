"""Rules baseline_scores, embedding_scores: a baseline's scores (TRAK format), index, meta."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.lds.jobs import run_baseline_scores  # noqa: E402

run_baseline_scores(smk)
