"""Rule train_text_encoder: tokenizer + small CLIP on the captions -> {OUT}/text_encoder/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.text.encoder import train_text_encoder  # noqa: E402

torch.set_num_threads(smk.threads)
train_text_encoder(
    smk.input.train,
    smk.input.test,
    dict(smk.params.text_encoder),
    Path(smk.output.metrics).parent,
    device=resolve_device(smk.params.device),
)
