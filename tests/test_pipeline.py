"""Stage pipeline: the text-to-image family's parts as a StableDiffusionPipeline folder.

A plumbing test: tiny components with random weights, built here, exported and loaded back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_COND_UNET, tiny_parts

from stepattr.core.diffusion import Schedule, build_unet, save_model, unet_kwargs
from stepattr.stable_diffusion.export import assemble_pipeline, load_pipeline, save_pipeline
from stepattr.text.encoder import load_text_encoder, token_ids

MODEL = TINY_COND_UNET
PROMPT = "a handwritten digit 3"


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UNet model folder, an autoencoder folder and a text-encoder folder, random weights."""
    return tiny_parts(tmp_path_factory.mktemp("parts"))


def test_exported_pipeline_is_the_workflows_models(parts: Path, tmp_path: Path) -> None:
    pipeline = assemble_pipeline(parts / "unet", parts / "vae", parts / "text", 0.5)
    folder = save_pipeline(pipeline, tmp_path / "pipeline")
    assert not list(tmp_path.glob(".pipeline.*"))  # the temporary folder is gone
    loaded = load_pipeline(folder)
    assert loaded.vae.config.scaling_factor == 0.5
    assert loaded.scheduler.config.beta_end == 0.015 and not loaded.scheduler.config.clip_sample
    tokenizer, encoder = load_text_encoder(parts / "text")
    with torch.no_grad():  # the prompt's states, as the state cache encodes them
        ours = encoder(input_ids=token_ids(tokenizer, [PROMPT], 10, "t")).last_hidden_state
        theirs = loaded.encode_prompt(PROMPT, "cpu", 1, False)[0]
        torch.testing.assert_close(theirs, ours)
        x, t = torch.randn(2, 4, 4, 4), torch.tensor([3, 700])
        built = assemble_pipeline(parts / "unet", parts / "vae", parts / "text", 0.5).unet
        torch.testing.assert_close(
            loaded.unet(x, t, encoder_hidden_states=ours.expand(2, -1, -1)).sample,
            built(x, t, encoder_hidden_states=ours.expand(2, -1, -1)).sample,
        )
    out = loaded(
        PROMPT, height=8, width=8, num_inference_steps=2, guidance_scale=2.0,
        output_type="latent", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert out.images.shape == (1, 4, 4, 4) and np.isfinite(out.images.numpy()).all()


def test_pipeline_folder_missing_a_component_is_named(parts: Path, tmp_path: Path) -> None:
    pipeline = assemble_pipeline(parts / "unet", parts / "vae", parts / "text", 0.5)
    folder = save_pipeline(pipeline, tmp_path / "pipeline")
    shutil.rmtree(folder / "vae")
    with pytest.raises(ValueError, match=r"not a StableDiffusionPipeline folder \(no vae\)"):
        load_pipeline(folder)


def test_a_pixel_model_is_refused(tmp_path: Path, parts: Path) -> None:
    unet = build_unet(MODEL, 8, 1)
    save_model(tmp_path / "pixel", unet, unet_kwargs(MODEL, 8, 1, None), Schedule())
    with pytest.raises(ValueError, match=r"pixel: not a text-conditioned model"):
        assemble_pipeline(tmp_path / "pixel", parts / "vae", parts / "text", 0.5)
