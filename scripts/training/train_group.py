"""Rules retrain_group_*: G subset models of one seed trained together -> {MODELS}/subset_*/
(stepattr.training.jobs.train_group_and_save)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.training.jobs import run_train_group  # noqa: E402

run_train_group(smk)
