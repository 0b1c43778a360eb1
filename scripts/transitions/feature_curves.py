"""Rule feature_curves: P(feature | x_t) per target and grid step, and steepest-rise intervals
(the text-to-image family: latents completed under their prompts and decoded)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.io import save_csv  # noqa: E402
from stepattr.core.names import LATENT_FAMILIES  # noqa: E402
from stepattr.detectors.detector import load_detector  # noqa: E402
from stepattr.latents.autoencoder import autoencoder_source, load_autoencoder, load_latents  # noqa: E402
from stepattr.transitions.curves import feature_curves, prompted_completions  # noqa: E402

torch.set_num_threads(smk.threads)
device = resolve_device(smk.params.device)
cfg = smk.params.transitions
detector = load_detector(
    cfg["detector"], Path(smk.input.classifier).parent, smk.params.clip, device=device
)
prompted = None
if smk.params.family in LATENT_FAMILIES:
    vae = load_autoencoder(autoencoder_source(smk.input.autoencoder, smk.params.hub_id), device)
    prompted = prompted_completions(
        smk.input.text_states, vae, load_latents(smk.input.latents)[2], smk.params.guidance
    )
    print(f"completions under the targets' prompts, guidance {smk.params.guidance}")
curves, intervals = feature_curves(
    smk.input.targets,
    Path(smk.input.model).parent,
    detector,
    cfg,
    device=device,
    progress=True,
    prompted=prompted,
)
save_csv(smk.output.curves, curves)
save_csv(smk.output.intervals, intervals)
print(f"{len(intervals)} targets; median transition step {intervals['transition_step'].median()}")
