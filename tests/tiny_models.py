"""Model configs shared by the unit tests: small enough for a test to train or sample in seconds."""

TINY_UNET = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "attention_levels": [],
    "norm_num_groups": 4,
    "dropout": 0.0,
}
