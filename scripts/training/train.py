"""Rules train and retrain: one DDPM model -> {MODELS}/{model_id}/ (stepattr.training.jobs)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.training.jobs import train_and_save  # noqa: E402

torch.set_num_threads(smk.threads)
p = smk.params
train_and_save(
    train_split=smk.input.train,
    manifest=smk.input.manifest,
    masks=smk.input.get("masks"),
    out_dir=Path(smk.output.model).parent,
    state_path=p.state,
    model_cfg=dict(p.model),
    train_cfg=dict(p.train),
    diffusion_cfg=dict(p.diffusion),
    model_id=p.model_id,
    seed=int(p.seed),
    steps=int(p.steps),
    subset_row=p.subset_row,
    shared_batches=bool(p.get("shared_batches", False)),
    device=resolve_device(p.device),
    latents=smk.input.get("latents"),
    text_states=smk.input.get("text_states"),
)
