"""Target generation: the .npz format, x0hat consistency with the model, validation targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stepattr.core.diffusion import Schedule, build_unet, predict_x0
from stepattr.core.images import to_model_space
from stepattr.core.seeds import VALIDATION_NOISE, derive_seed
from stepattr.targets import generate as targets
from stepattr.targets.generate import (
    check_targets,
    generated_targets,
    pick_validation,
    save_grid_png,
    save_targets,
    validation_targets,
)
from stepattr.targets.sets import load_target_sets, prompt_states
from stepattr.workflow.configs import load_config

REPO = Path(__file__).resolve().parents[1]
GRID = [900, 500, 0]
SCHEDULE = Schedule()


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    cfg = load_config([REPO / "config" / "ci.yaml"])
    torch.manual_seed(0)
    model = build_unet(cfg["model"], 8, 1).eval()
    with torch.no_grad():  # a random model predicts eps ~ 0; scale it up to exercise clipping
        model.conv_out.weight.mul_(5)
    return model


@pytest.fixture(scope="module")
def generated(unet) -> dict[str, np.ndarray]:
    return generated_targets(unet, SCHEDULE, num=3, grid=GRID, inference_steps=20, seed=0)


def test_generated_set_has_the_contract_format(generated, tmp_path):
    check_targets(generated)
    assert generated["x_t"].shape == generated["x0hat"].shape == (3, 3, 1, 8, 8)
    assert generated["x0"].shape == (3, 1, 8, 8)
    assert generated["grid"].tolist() == GRID
    assert generated["target_id"].tolist() == [0, 1, 2]
    assert (generated["label"] == -1).all() and (generated["source_index"] == -1).all()
    assert np.abs(generated["x0"]).max() <= 1 and np.abs(generated["x0hat"]).max() <= 1
    save_targets(tmp_path / "generated.npz", generated)
    with np.load(tmp_path / "generated.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(targets.FIELDS)
        np.testing.assert_array_equal(data["x_t"], generated["x_t"])


def test_x0hat_is_the_clipped_one_step_estimate_from_x_t(unet, generated):
    clipped = 0
    for g, t in enumerate(GRID):
        x_t = torch.from_numpy(generated["x_t"][:, g])
        steps = torch.full((len(x_t),), t)
        with torch.no_grad():
            eps = unet(x_t, steps).sample
        raw = predict_x0(x_t, eps, steps, SCHEDULE.alphas_cumprod)
        clipped += int((raw.abs() > 1).sum())
        np.testing.assert_allclose(generated["x0hat"][:, g], raw.clamp(-1, 1).numpy(), atol=2e-5)
    assert clipped > 0, "the test model should exercise the clipping"
    # the last ancestral step (t = 0) returns its x0hat as the sample
    np.testing.assert_allclose(generated["x0"], generated["x0hat"][:, GRID.index(0)], atol=1e-6)


def test_generation_is_seeded_per_chunk(unet, generated, monkeypatch):
    again = generated_targets(unet, SCHEDULE, num=3, grid=GRID, inference_steps=20, seed=0)
    np.testing.assert_array_equal(again["x_t"], generated["x_t"])
    other = generated_targets(unet, SCHEDULE, num=3, grid=GRID, inference_steps=20, seed=1)
    assert not np.array_equal(other["x0"], generated["x0"])
    monkeypatch.setattr(targets, "SAMPLE_BATCH", 2)
    chunked = generated_targets(unet, SCHEDULE, num=3, grid=GRID, inference_steps=20, seed=0)
    first_chunk = generated_targets(unet, SCHEDULE, num=2, grid=GRID, inference_steps=20, seed=0)
    np.testing.assert_array_equal(chunked["x_t"][:2], first_chunk["x_t"])
    assert not np.allclose(chunked["x_t"][2], chunked["x_t"][0])


def test_grid_steps_off_the_sampler_schedule_are_rejected(unet):
    with pytest.raises(ValueError, match="not on the sampler's schedule"):
        generated_targets(unet, SCHEDULE, num=1, grid=[901], inference_steps=20, seed=0)


def test_validation_targets_are_noised_real_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 10).astype(np.int64)
    val = validation_targets(images, labels, 6, GRID, SCHEDULE, seed=2, first_id=3)
    check_targets(val)
    assert val["target_id"].tolist() == [3, 4, 5, 6, 7, 8]
    assert np.bincount(val["label"]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(val["label"], labels[val["source_index"]])
    x0 = to_model_space(images[val["source_index"]])
    np.testing.assert_array_equal(val["x0"], x0.numpy())
    for g in range(len(GRID)):
        np.testing.assert_array_equal(val["x0hat"][:, g], val["x0"])
    for i, tid in enumerate(val["target_id"]):
        gen = torch.Generator().manual_seed(derive_seed(VALIDATION_NOISE, 2, int(tid)))
        noise = torch.randn((len(GRID), 1, 8, 8), generator=gen)
        for g, t in enumerate(GRID):
            a = SCHEDULE.alphas_cumprod[t]
            expected = a.sqrt() * x0[i].double() + (1 - a).sqrt() * noise[g].double()
            np.testing.assert_allclose(val["x_t"][i, g], expected.numpy(), atol=1e-6)
    again = validation_targets(images, labels, 6, GRID, SCHEDULE, seed=2, first_id=3)
    np.testing.assert_array_equal(again["x_t"], val["x_t"])


def test_validation_pick_is_stratified_and_bounded():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
    picked = pick_validation(labels, 9, seed=0)
    assert len(set(picked.tolist())) == 9
    assert np.bincount(labels[picked]).tolist() == [4, 2, 3]
    with pytest.raises(ValueError, match="sampling.num_validation"):
        pick_validation(labels, 13, seed=0)


def test_bad_target_arrays_are_rejected_naming_the_key(generated):
    bad = dict(generated, label=generated["label"].astype(np.int32))
    with pytest.raises(ValueError, match="label"):
        check_targets(bad)
    with pytest.raises(ValueError, match="grid"):
        check_targets(dict(generated, grid=np.array([900, 0], dtype=np.int64)))


def test_png_grid_upscales_each_image(generated, tmp_path):
    save_grid_png(tmp_path / "grid.png", generated["x0"], ncol=2)
    with Image.open(tmp_path / "grid.png") as png:
        # 8x8 images upscaled 8x to 64 pixels, 2 columns x 2 rows, 1-pixel gutters
        assert png.size == (2 * 65 + 1, 2 * 65 + 1)
        pixels = np.asarray(png)
    tile = pixels[1:65, 1:65]
    expected = np.clip(np.round((generated["x0"][0, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tile[::8, ::8], expected)


def text_to_image_set(generated: dict[str, np.ndarray], first_id: int = 0) -> dict:
    """A prompted (text-to-image) target set in the format's shape: 4-channel latents with
    their prompts and decoded images."""
    n, g = generated["x0hat"].shape[:2]
    latent = np.repeat(generated["x0hat"], 4, axis=2) * 3  # latents are not clipped
    return dict(
        generated,
        x_t=latent,
        x0hat=latent,
        x0=latent[:, -1],
        target_id=np.arange(first_id, first_id + n, dtype=np.int64),
        prompt=np.array([f"a {i}" for i in range(n)]),
        decoded_x_t=generated["x_t"],
        decoded_x0hat=generated["x0hat"],
        decoded_x0=generated["x0"],
    )


def test_text_to_image_targets_keep_prompts_and_decoded_images(generated, tmp_path):
    arrays = text_to_image_set(generated)
    check_targets(arrays)
    save_targets(tmp_path / "generated.npz", arrays)
    with pytest.raises(ValueError, match=r"has \['prompt'\] but not all of"):
        check_targets({k: v for k, v in arrays.items() if not k.startswith("decoded")})
    with pytest.raises(ValueError, match=r"decoded_x0 is float64"):
        check_targets(dict(arrays, decoded_x0=arrays["decoded_x0"].astype(np.float64)))
    sets = load_target_sets([tmp_path / "generated.npz"], ["generated"])
    assert sets.prompt.tolist() == ["a 0", "a 1", "a 2"]
    assert sets.index()["prompt"].tolist() == ["a 0", "a 1", "a 2"]
    np.testing.assert_array_equal(sets.image_x0hat, generated["x0hat"])  # decoded, not latents
    assert sets.x0hat.shape[2] == 4
    save_targets(tmp_path / "pixel.npz", dict(generated, target_id=np.arange(3, 6)))
    with pytest.raises(ValueError, match="mixes text-to-image and pixel target sets"):
        load_target_sets([tmp_path / "generated.npz", tmp_path / "pixel.npz"], ["a", "b"])
    # each target's prompt states, from the text-state cache
    texts = np.array(["", "a 0", "a 1", "a 2"])
    states = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    np.savez(tmp_path / "states.npz", texts=texts, states=states)
    got = prompt_states(sets, tmp_path / "states.npz")
    np.testing.assert_array_equal(got.numpy(), states[1:])
    np.savez(tmp_path / "few.npz", texts=texts[:2], states=states[:2])
    with pytest.raises(ValueError, match=r"few\.npz: no text states for 'a 1'"):
        prompt_states(sets, tmp_path / "few.npz")
    with pytest.raises(ValueError, match="text-to-image targets need text states"):
        prompt_states(sets, None)
    pixel = load_target_sets([tmp_path / "pixel.npz"], ["generated"])
    assert prompt_states(pixel, None) is None and pixel.image_x0hat is pixel.x0hat
