"""Rule eval_subset_outputs: a subset model's f_t at every grid step and D-TRAK loss per target."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.diffusion import resolve_device  # noqa: E402
from stepattr.io import save_npz  # noqa: E402
from stepattr.subset_outputs import evaluate_model  # noqa: E402
from stepattr.target_sets import load_target_sets  # noqa: E402

torch.set_num_threads(smk.threads)
targets = load_target_sets(smk.input.targets, smk.params.target_sets)
outputs = evaluate_model(
    Path(smk.input.model).parent,
    targets,
    resamples=smk.params.resamples,
    seed=smk.params.seed,
    dtrak_draws=smk.params.dtrak_draws,
    dtrak_seed=smk.params.dtrak_seed,
    batch_size=smk.params.batch_size,
    device=resolve_device(smk.params.device),
)
print(
    f"{smk.wildcards.model_id}: f {outputs['f'].shape}, mean {outputs['f'].mean():.5f}; "
    f"dtrak mean {outputs['dtrak'].mean():.5f}"
)
save_npz(smk.output[0], **outputs)
