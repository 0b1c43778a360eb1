"""Rule feature_curves: P(feature | x_t) per target and grid step, and steepest-rise intervals."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.detectors import load_detector  # noqa: E402
from stepattr.diffusion import resolve_device  # noqa: E402
from stepattr.io import save_csv  # noqa: E402
from stepattr.transitions import feature_curves  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
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
