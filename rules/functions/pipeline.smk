# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def pipeline_outputs():
    """text_to_image: the exported pipeline folder's index (written last: the folder is
    complete when it exists); stable_diffusion: what the fine-tune changes in its samples."""
    if config["family"] == "stable_diffusion":
        return [f"{TABLES}/fine_tune_effect.md", f"{FIGURES}/fine_tune_effect.png"]
    return [f"{OUT}/pipeline/model_index.json"]


def pipeline_inputs(wildcards):
    """The parts the pipeline is assembled from: the latent cache (its scaling factor), the
    autoencoder and the text encoder (folders; none for hub ids)."""
    return {
        "latents": f"{OUT}/latents/latents.npz",
        "autoencoder": autoencoder_files(),
        "text_encoder": text_encoder_files(),
    }


def pipeline_index():
    """The stable_diffusion family's input pipeline (its index file); none for other families."""
    path = config["pipeline"]["path"]
    return [f"{path}/model_index.json"] if path else []
