# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.

def latent_scaling():
    """1 / std of the training latents for an autoencoder trained here; a pretrained one's own."""
    return "config" if config["autoencoder"]["pretrained"] is not None else "data"


def latents_outputs():
    return [f"{OUT}/latents/latents.npz", f"{FIGURES}/autoencoder.png", f"{TABLES}/autoencoder.md"]
