"""Rule export_pipeline: full_0, the autoencoder and the text encoder as one
StableDiffusionPipeline folder -> {OUT}/pipeline/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

from stepattr.latents.autoencoder import autoencoder_source, load_latents  # noqa: E402
from stepattr.stable_diffusion.export import assemble_pipeline, save_pipeline  # noqa: E402
from stepattr.text.encoder import text_encoder_source  # noqa: E402

p = smk.params
scaling_factor = load_latents(smk.input.latents)[2]
pipeline = assemble_pipeline(
    Path(smk.input.model).parent,
    autoencoder_source(smk.input.autoencoder, p.autoencoder_hub_id),
    text_encoder_source(smk.input.text_encoder, p.text_encoder_hub_id),
    scaling_factor,
)
folder = save_pipeline(pipeline, Path(smk.output.index).parent)
print(f"StableDiffusionPipeline saved to {folder} (latent scaling factor {scaling_factor:.5f})")
