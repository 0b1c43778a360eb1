# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.

TEXT_ENCODER = f"{OUT}/text_encoder"


def text_encoder_files():
    """The encoder's files: the configured pretrained folder's, else the ones trained here."""
    pretrained = config["text_encoder"]["pretrained"]
    if pretrained is not None and Path(pretrained).is_dir():
        return [f"{pretrained}/text_encoder/config.json"]
    if pretrained is not None:
        return []  # a hub id: transformers fetches it (where the hub is reachable)
    return [f"{TEXT_ENCODER}/text_encoder/config.json"]


def text_encoder_hub_id():
    """The pretrained encoder's hub id, None where it is a folder or trained here (the script
    then loads the folder two levels above its text_encoder/config.json input)."""
    pretrained = config["text_encoder"]["pretrained"]
    return pretrained if pretrained is not None and not Path(pretrained).is_dir() else None


def text_outputs():
    """The text-state cache, and the metrics of the encoder where it is trained here."""
    trained = [f"{TEXT_ENCODER}/metrics.json"] if config["text_encoder"]["pretrained"] is None else []
    return trained + [f"{OUT}/text/states.npz"]
