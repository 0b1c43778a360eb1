# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def pipeline_outputs():
    """The pipeline folder's index (written last: the folder is complete when it exists)."""
    return [f"{OUT}/pipeline/model_index.json"]


def pipeline_inputs(wildcards):
    """The parts the pipeline is assembled from: the latent cache (its scaling factor), the
    autoencoder and the text encoder (folders; none for hub ids)."""
    return {
        "latents": f"{OUT}/latents/latents.npz",
        "autoencoder": autoencoder_files(),
        "text_encoder": text_encoder_files(),
    }
