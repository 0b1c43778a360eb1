"""Rule featurize_train: TRAK features of one shard of the training split for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.trak.jobs import featurize_train_shard  # noqa: E402

torch.set_num_threads(smk.threads)
featurize_train_shard(
    model_dir=Path(smk.input.model).parent,
    train_split=smk.input.train,
    out_path=smk.output.features,
    model_id=smk.wildcards.model_id,
    output_function=smk.params.output_function,
    projector=smk.params.projector,
    shard=int(smk.wildcards.shard),
    attribution=dict(smk.params.attribution),
    device=smk.params.device,
    latents=smk.input.get("latents"),
    text_states=smk.input.get("text_states"),
    caption_dropout=float(smk.params.caption_dropout),
)
