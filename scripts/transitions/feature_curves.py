"""Rule feature_curves: P(feature | x_t) per target and grid step, and steepest-rise intervals."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.io import save_csv  # noqa: E402
from stepattr.transitions.curves import feature_curves  # noqa: E402
from stepattr.transitions.detectors import load_detector  # noqa: E402

torch.set_num_threads(smk.threads)
device = resolve_device(smk.params.device)
cfg = smk.params.transitions
detector = load_detector(
    cfg["detector"], Path(smk.input.classifier).parent, smk.params.clip, device=device
)
curves, intervals = feature_curves(
    smk.input.targets, Path(smk.input.model).parent, detector, cfg, device=device, progress=True
)
save_csv(smk.output.curves, curves)
save_csv(smk.output.intervals, intervals)
print(f"{len(intervals)} targets; median transition step {intervals['transition_step'].median()}")
