"""Rule influence_scores: a method's scores, model-averaged, at the held-out-chosen damping."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.influence.jobs import run_influence_scores  # noqa: E402

run_influence_scores(smk)
