"""Rule prompt_following: prompted samples of full_0 under each guidance scale, decoded and
classified -> tables/prompt_following.{csv,md}, figures/prompts.png (stepattr.targets.prompts)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import load_model, resolve_device  # noqa: E402
from stepattr.core.images import save_image_grid, to_uint8  # noqa: E402
from stepattr.core.io import save_csv, save_text  # noqa: E402
from stepattr.core.provenance import describe_config  # noqa: E402
from stepattr.detectors.classifier import load_classifier  # noqa: E402
from stepattr.latents.autoencoder import autoencoder_source, load_autoencoder, load_latents  # noqa: E402
from stepattr.targets.prompts import prompt_following  # noqa: E402
from stepattr.text.encoder import load_text_states  # noqa: E402

torch.set_num_threads(smk.threads)
p = smk.params
device = resolve_device(p.device)
unet, schedule, _ = load_model(Path(smk.input.model).parent, device=device)
source = autoencoder_source(smk.input.autoencoder, p.hub_id)
table, images = prompt_following(
    unet,
    schedule,
    load_autoencoder(source, device=device),
    load_latents(smk.input.latents)[2],
    load_classifier(Path(smk.input.classifier).parent, device=device),
    load_text_states(smk.input.states),
    p.prompts,
    p.guidance_scales,
    p.per_prompt,
    p.inference_steps,
    p.seed,
)
save_csv(smk.output.table, table)
save_text(
    smk.output.markdown,
    f"Prompt following of full_0 ({describe_config(p.provenance)}; sampling.seed {p.seed}, "
    f"{p.per_prompt} samples per prompt and guidance scale, {p.inference_steps} sampler steps): "
    "samples the classifier puts in the prompt's class, 95% Wilson interval; guidance 1 is "
    "the conditional model without guidance.\n\n"
    + table.to_markdown(index=False, floatfmt=".3f")
    + "\n",
)
rows = [images[float(scale)] for scale in p.guidance_scales]
save_image_grid(smk.output.figure, to_uint8(torch.cat(rows)), ncol=p.per_prompt, scale=4)
print(table.to_string(index=False))
