"""Rule eval_subset_outputs: a subset model's f_t at every grid step and D-TRAK loss per target."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.io import save_npz  # noqa: E402
from stepattr.lds.ground_truth import subset_model_outputs  # noqa: E402
from stepattr.targets.sets import load_target_sets, prompt_states  # noqa: E402

torch.set_num_threads(smk.threads)
targets = load_target_sets(smk.input.targets, smk.params.target_sets)
outputs = subset_model_outputs(
    Path(smk.input.model).parent,
    targets,
    resamples=smk.params.resamples,
    seed=smk.params.seed,
    dtrak_draws=smk.params.dtrak_draws,
    dtrak_seed=smk.params.dtrak_seed,
    batch_size=smk.params.batch_size,
    device=resolve_device(smk.params.device),
    states=prompt_states(targets, smk.input.get("text_states")),
)
print(
    f"{smk.wildcards.model_id}: f {outputs['f'].shape}, mean {outputs['f'].mean():.5f}; "
    f"dtrak mean {outputs['dtrak'].mean():.5f}"
)
save_npz(smk.output[0], **outputs)
