"""Rule encode_latents: every image's scaled latent, once -> {OUT}/latents/latents.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)


import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.latents.autoencoder import autoencoder_source, load_autoencoder, write_latents  # noqa: E402

torch.set_num_threads(smk.threads)
source = autoencoder_source(smk.input.autoencoder, smk.params.hub_id)
vae = load_autoencoder(source, device=resolve_device(smk.params.device))
write_latents(
    vae, smk.input.train, smk.input.test, smk.output.latents, smk.params.scaling, batch_size=256
)
