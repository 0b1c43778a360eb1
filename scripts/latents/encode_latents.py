"""Rule encode_latents: every image's scaled latent, once -> {OUT}/latents/latents.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.latents.jobs import run_encode_latents  # noqa: E402

run_encode_latents(smk)
