"""The rule entry points of stage latents (scripts/latents/): each reads its rule's
snakemake object once and calls the stage's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stepattr.core.diffusion import resolve_device
from stepattr.core.provenance import describe_config
from stepattr.detectors.classifier import load_classifier
from stepattr.latents.autoencoder import (
    AutoencoderSettings,
    autoencoder_source,
    load_autoencoder,
    train_autoencoder,
    write_latents,
)
from stepattr.latents.report import autoencoder_report


def run_autoencoder_report(smk: Any) -> None:
    """Rule autoencoder_report: reconstructions and the classifier's accuracy on them."""
    torch.set_num_threads(smk.threads)
    device = resolve_device(smk.params.device)
    source = autoencoder_source(smk.input.autoencoder, smk.params.hub_id)
    table = autoencoder_report(
        load_autoencoder(source, device=device),
        load_classifier(Path(smk.input.classifier).parent, device=device),
        smk.input.test,
        smk.output.figure,
        smk.output.table,
        smk.output.markdown,
        describe_config(smk.params.provenance),
    )
    print(table.to_string(index=False))


def run_encode_latents(smk: Any) -> None:
    """Rule encode_latents: every image's scaled latent, once -> {OUT}/latents/latents.npz."""
    torch.set_num_threads(smk.threads)
    source = autoencoder_source(smk.input.autoencoder, smk.params.hub_id)
    vae = load_autoencoder(source, device=resolve_device(smk.params.device))
    write_latents(
        vae, smk.input.train, smk.input.test, smk.output.latents, smk.params.scaling, batch_size=256
    )


def run_train_autoencoder(smk: Any) -> None:
    """Rule train_autoencoder: a small AutoencoderKL on the training split -> {OUT}/autoencoder/."""
    torch.set_num_threads(smk.threads)
    train_autoencoder(
        smk.input.train,
        smk.input.test,
        AutoencoderSettings.from_config(smk.params.autoencoder),
        Path(smk.output.config).parent,
        device=resolve_device(smk.params.device),
    )
