# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def pipeline_outputs():
    """text_to_image: the exported pipeline folder's index (written last: the folder is
    complete when it exists); stable_diffusion: full_0's LoRA for diffusers, what the fine-tune
    changes in its samples and, with a detector, the pretrained pipeline's transitions."""
    if config["family"] == "stable_diffusion":
        effect = [
            f"{OUT}/pipeline/lora/pytorch_lora_weights.safetensors",
            f"{TABLES}/fine_tune_effect.md",
            f"{FIGURES}/fine_tune_effect.png",
        ]
        if not pipeline_transitions_enabled(config):
            return effect
        return effect + [f"{TABLES}/pipeline_transitions.md", f"{FIGURES}/pipeline_transitions.png"]
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


def transitions_clip_files():
    """The detector folder's config (resolved to a local folder); none without a detector."""
    clip = config["pipeline"]["transitions"]["clip"]
    return [f"{clip}/config.json"] if clip else []


def pipeline_transitions_runtime(wildcards):
    """Minutes requested by pipeline_transitions (its UNet passes, priced as completions)."""
    from stepattr.workflow.cost import forward_seconds, pipeline_transition_passes

    return minutes(forward_seconds(config, pipeline_transition_passes(config), device_kind()))
