"""Rules retrain_group_*: G subset models of one seed trained together -> {MODELS}/subset_*/
(stepattr.training.jobs.train_group_and_save)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.training.jobs import train_group_and_save  # noqa: E402

torch.set_num_threads(smk.threads)
p = smk.params
train_group_and_save(
    train_split=smk.input.train,
    manifest=smk.input.manifest,
    masks=smk.input.masks,
    out_dirs=[Path(smk.output[0]).parent.parent / model_id for model_id in p.model_ids],
    state_path=p.state,
    model_cfg=dict(p.model),
    train_cfg=dict(p.train),
    diffusion_cfg=dict(p.diffusion),
    model_ids=list(p.model_ids),
    seed=int(p.seed),
    steps=int(p.steps),
    subset_rows=[int(r) for r in p.subset_rows],
    device=resolve_device(p.device),
)
