"""Rule influence_model_scores: one model's influence scores for every (variant, damping)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.influence.jobs import run_model_scores  # noqa: E402

run_model_scores(smk)
