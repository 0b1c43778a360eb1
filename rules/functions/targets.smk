# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def targets_outputs():
    """The target sets, the generated targets' grid and the preview."""
    files = target_files() + [f"{TARGETS}/generated.png"]
    if config["sampling"]["num_preview"]:
        files += [f"{TARGETS}/preview.npy", f"{TARGETS}/preview.png"]
    return files


def sample_targets_inputs(wildcards):
    """Prompted targets (text-to-image) also read the autoencoder, latents, states and the
    split's class names."""
    if config["family"] not in LATENT_FAMILIES:
        return {}
    return {**decoding_inputs(), "train": f"{DATA}/train.npz"}
