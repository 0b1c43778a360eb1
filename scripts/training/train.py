"""Rules train and retrain: one DDPM model -> {MODELS}/{model_id}/ (stepattr.training.jobs)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.training.jobs import run_train  # noqa: E402

run_train(smk)
