"""Rule train_autoencoder: a small AutoencoderKL on the training split -> {OUT}/autoencoder/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.latents.autoencoder import train_autoencoder  # noqa: E402

torch.set_num_threads(smk.threads)
train_autoencoder(
    smk.input.train,
    smk.input.test,
    dict(smk.params.autoencoder),
    Path(smk.output.config).parent,
    device=resolve_device(smk.params.device),
)
