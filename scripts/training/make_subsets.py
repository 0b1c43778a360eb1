"""Rule make_subsets: subset matrix + table -> {OUT}/subsets/ (stepattr.training.subsets)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.training.jobs import run_make_subsets  # noqa: E402

run_make_subsets(smk)
