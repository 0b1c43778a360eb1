"""Rule train_classifier: the CNN feature detector / embedding -> {OUT}/classifier/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.transitions.jobs import run_train_classifier  # noqa: E402

run_train_classifier(smk)
