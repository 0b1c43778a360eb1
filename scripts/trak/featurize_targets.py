"""Rule featurize_targets: TRAK features of one target set at every grid step for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.trak.jobs import featurize_target_set  # noqa: E402

torch.set_num_threads(smk.threads)
featurize_target_set(
    model_dir=Path(smk.input.model).parent,
    targets_path=smk.input.targets,
    target_set=smk.wildcards.target_set,
    out_paths={"features": smk.output.features, "whole_loss": smk.output.whole_loss},
    model_id=smk.wildcards.model_id,
    output_function=smk.params.output_function,
    projector=smk.params.projector,
    attribution=dict(smk.params.attribution),
    device=smk.params.device,
    text_states=smk.input.get("text_states"),
)
