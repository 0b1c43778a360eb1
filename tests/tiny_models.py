"""Model configs shared by the unit tests: small enough for a test to train or sample in seconds;
a killed training job, for the resume tests; and tiny text-to-image parts with random weights
(UNet, autoencoder, tokenizer and text encoder) and the StableDiffusionPipeline folder made of
them, for the plumbing tests of the pipeline and Stable Diffusion stages."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

TINY_UNET = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "attention_levels": [],
    "norm_num_groups": 4,
    "dropout": 0.0,
}


@contextlib.contextmanager
def killed_at_step(monkeypatch, trainer_class: type, step: int) -> Iterator[None]:
    """Inside the block, ``trainer_class.train_step`` raises KeyboardInterrupt (a killed job)
    when asked for step ``step``; afterwards the real step is back."""
    real_step = trainer_class.train_step

    def killed(self):
        if self.step == step:
            raise KeyboardInterrupt("job killed")
        return real_step(self)

    monkeypatch.setattr(trainer_class, "train_step", killed)
    try:
        yield
    finally:
        monkeypatch.setattr(trainer_class, "train_step", real_step)


TINY_COND_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [0],
                  "norm_num_groups": 4, "attention_head_dim": 4}  # fmt: skip
TINY_AE = {"block_out_channels": [8, 16], "latent_channels": 4, "layers_per_block": 1,
           "norm_num_groups": 4, "epochs": 1, "batch_size": 16, "lr": 0.001, "kl_weight": 1e-6,
           "seed": 0}  # fmt: skip
TINY_TEXT = {"width": 16, "layers": 1, "heads": 2, "context": 10, "patch_size": 4, "seed": 0,
             "vocab_size": 600, "epochs": 1, "batch_size": 16, "lr": 0.001}  # fmt: skip


def tiny_parts(root: Path, beta_end: float = 0.015) -> Path:
    """``root``/unet (a workflow model folder), ``root``/vae and ``root``/text (tokenizer/,
    text_encoder/ and clip/, the whole CLIP with its tokenizer): 8x8 grayscale images, 4x4x4
    latents, random weights."""
    import torch
    from transformers import CLIPTextModel

    from stepattr.core.diffusion import Schedule, build_unet, save_model, unet_kwargs
    from stepattr.latents.autoencoder import AutoencoderSettings, build_autoencoder
    from stepattr.text.encoder import TextEncoderSettings, build_clip, train_tokenizer

    torch.manual_seed(0)
    tokenizer = train_tokenizer([f"a handwritten digit {d}" for d in range(10)], 600)
    clip = build_clip(TextEncoderSettings.from_config(TINY_TEXT), len(tokenizer), 1, 8)
    tokenizer.save_pretrained(root / "text" / "tokenizer")
    CLIPTextModel(clip.config.text_config).save_pretrained(root / "text" / "text_encoder")
    clip.save_pretrained(root / "text" / "clip")
    tokenizer.save_pretrained(root / "text" / "clip")
    build_autoencoder(AutoencoderSettings.from_config(TINY_AE), 1, 8).save_pretrained(
        root / "vae", safe_serialization=True
    )
    unet = build_unet(TINY_COND_UNET, 4, 4, cross_attention_dim=16)
    save_model(
        root / "unet", unet, unet_kwargs(TINY_COND_UNET, 4, 4, 16), Schedule(beta_end=beta_end)
    )
    return root


def tiny_pipeline(root: Path) -> Path:
    """A StableDiffusionPipeline folder ``root``/pipeline of :func:`tiny_parts`."""
    from stepattr.stable_diffusion.export import assemble_pipeline, save_pipeline

    parts = tiny_parts(root / "parts")
    pipeline = assemble_pipeline(parts / "unet", parts / "vae", parts / "text", 0.5)
    return save_pipeline(pipeline, root / "pipeline")


def skeleton_sd15(root: Path) -> Path:
    """A StableDiffusionPipeline folder of Stable Diffusion v1.5's configs without weights
    (what config checks, dry runs and the cost table read): ``root``/sd15, and beside it a
    CLIP folder's config, ``root``/clip-vit-large-patch14."""
    import json

    folder = root / "sd15"
    parts = {
        "unet/config.json": {"_class_name": "UNet2DConditionModel", "sample_size": 64,
                             "cross_attention_dim": 768, "in_channels": 4},
        "vae/config.json": {"_class_name": "AutoencoderKL", "latent_channels": 4,
                            "block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.18215},
        "text_encoder/config.json": {"hidden_size": 768, "max_position_embeddings": 77},
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
        "scheduler/scheduler_config.json": {"_class_name": "PNDMScheduler", "beta_start": 0.00085,
                                            "beta_end": 0.012, "beta_schedule": "scaled_linear",
                                            "num_train_timesteps": 1000,
                                            "prediction_type": "epsilon"},
        "model_index.json": {"_class_name": "StableDiffusionPipeline"},
    }  # fmt: skip
    parts["../clip-vit-large-patch14/config.json"] = {"model_type": "clip"}
    for name, content in parts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    return folder
