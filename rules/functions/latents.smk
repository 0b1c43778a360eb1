# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.

AUTOENCODER = f"{OUT}/autoencoder"


def autoencoder_files():
    """The autoencoder's folder files: the configured pretrained one, else the one trained here."""
    pretrained = config["autoencoder"]["pretrained"]
    if pretrained is not None and Path(pretrained).is_dir():
        return [f"{pretrained}/config.json"]
    if pretrained is not None:
        return []  # a hub id: diffusers fetches it (where the hub is reachable)
    return [f"{AUTOENCODER}/model/config.json", f"{AUTOENCODER}/model/diffusion_pytorch_model.safetensors"]


def autoencoder_hub_id():
    """The pretrained autoencoder's hub id, None where it is a folder or trained here (the
    scripts then load the folder of the first autoencoder input)."""
    pretrained = config["autoencoder"]["pretrained"]
    return pretrained if pretrained is not None and not Path(pretrained).is_dir() else None


def latent_scaling():
    """1 / std of the training latents for an autoencoder trained here; a pretrained one's own."""
    return "config" if config["autoencoder"]["pretrained"] is not None else "data"


def latents_outputs():
    return [f"{OUT}/latents/latents.npz", f"{FIGURES}/autoencoder.png", f"{TABLES}/autoencoder.md"]
