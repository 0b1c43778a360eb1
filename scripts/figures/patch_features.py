"""Rule patch_features: masked target features of the patch targets for one model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.figures.jobs import patch_features_job  # noqa: E402

torch.set_num_threads(smk.threads)
patch_features_job(
    model_dir=Path(smk.input.model).parent,
    model_id=smk.wildcards.model_id,
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    out_path=smk.output.features,
    output_function=smk.params.output_function,
    projector=smk.params.projector,
    attribution=dict(smk.params.attribution),
    figures=dict(smk.params.figures),
    device=smk.params.device,
)
