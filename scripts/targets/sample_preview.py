"""Rule sample_preview: images from full_0 for the quality check -> preview.npy + preview.png."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import load_model, resolve_device  # noqa: E402
from stepattr.core.images import to_uint8  # noqa: E402
from stepattr.core.io import save_npy  # noqa: E402
from stepattr.core.seeds import PREVIEW  # noqa: E402
from stepattr.targets.generate import generate_images, save_grid_png  # noqa: E402

torch.set_num_threads(smk.threads)
p = smk.params
unet, schedule, _ = load_model(Path(smk.input.model).parent, resolve_device(p.device))
x0, _ = generate_images(
    unet, schedule, p.num_preview, p.inference_steps, p.seed, stream=PREVIEW, progress=True
)
save_npy(smk.output.images, to_uint8(x0))
save_grid_png(smk.output.png, x0)
