"""Rule featurize_targets: TRAK features of one target set at every grid step for one model."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.trak.workflow import featurize_target_set  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(smk.threads)
featurize_target_set(
    model_dir=Path(smk.input.model).parent,
    targets_path=smk.input.targets,
    target_set=smk.wildcards.target_set,
    out_path=smk.output.features,
    model_id=smk.wildcards.model_id,
    output_function=smk.params.output_function,
    projector=smk.params.projector,
    attribution=dict(smk.params.attribution),
    device=smk.params.device,
)
