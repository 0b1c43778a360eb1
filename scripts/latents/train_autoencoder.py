"""Rule train_autoencoder: a small AutoencoderKL on the training split -> {OUT}/autoencoder/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.latents.jobs import run_train_autoencoder  # noqa: E402

run_train_autoencoder(smk)
