"""Rule autoencoder_report: reconstructions and the classifier's accuracy on them."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.latents.jobs import run_autoencoder_report  # noqa: E402

run_autoencoder_report(smk)
