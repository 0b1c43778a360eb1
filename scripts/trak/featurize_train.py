"""Rule featurize_train: TRAK features of one shard of the training split for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import run_featurize_train  # noqa: E402

run_featurize_train(smk)
