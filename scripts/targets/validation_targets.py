"""Rule validation_targets: real test images as targets -> {TARGETS}/validation.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.targets.jobs import run_validation_targets  # noqa: E402

run_validation_targets(smk)
