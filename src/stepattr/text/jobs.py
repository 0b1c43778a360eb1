"""The rule entry points of stage text (scripts/text/): each reads its rule's
snakemake object once and calls the stage's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stepattr.core.diffusion import resolve_device
from stepattr.text.encoder import (
    TextEncoderSettings,
    load_text_encoder,
    text_encoder_source,
    train_text_encoder,
    write_text_states,
)


def run_encode_text(smk: Any) -> None:
    """Rule encode_text: the frozen encoder's states of every training caption -> states.npz."""
    torch.set_num_threads(smk.threads)
    source = text_encoder_source(smk.input.text_encoder, smk.params.hub_id)
    tokenizer, encoder = load_text_encoder(source, resolve_device(smk.params.device))
    prompts = [prompt["text"] for prompt in smk.params.prompts]
    count = write_text_states(tokenizer, encoder, smk.input.train, prompts, smk.output.states)
    print(f"{count} distinct captions encoded")


def run_train_text_encoder(smk: Any) -> None:
    """Rule train_text_encoder: tokenizer + small CLIP on the captions -> {OUT}/text_encoder/."""
    torch.set_num_threads(smk.threads)
    train_text_encoder(
        smk.input.train,
        smk.input.test,
        TextEncoderSettings.from_config(smk.params.text_encoder),
        Path(smk.output.metrics).parent,
        device=resolve_device(smk.params.device),
    )
