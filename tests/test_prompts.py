"""Prompted samples of a text-to-image model: classifier-free guidance and prompt following."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stepattr.core.diffusion import GuidedUNet, Schedule, build_unet, sample
from stepattr.detectors.classifier import ConvClassifier, predict_proba
from stepattr.latents.autoencoder import AutoencoderSettings, build_autoencoder
from stepattr.targets.generate import check_targets
from stepattr.targets.prompts import decode, prompt_following, prompt_latents, prompted_targets
from stepattr.transitions.curves import (
    PromptedCompletions,
    completion_generators,
    sample_completions,
)

MODEL = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [0],
         "norm_num_groups": 4, "attention_head_dim": 4}  # fmt: skip
AE = AutoencoderSettings.from_config({
    "block_out_channels": [8, 16], "latent_channels": 4, "layers_per_block": 1,
    "norm_num_groups": 4, "epochs": 1, "batch_size": 16, "lr": 0.001, "kl_weight": 1e-6, "seed": 0,
})  # fmt: skip


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    unet = build_unet(MODEL, 4, 4, cross_attention_dim=8).eval()
    rng = np.random.default_rng(0)
    states = {t: rng.standard_normal((3, 8)).astype(np.float32) for t in ["", "a 1", "a 2"]}
    vae = build_autoencoder(AE, 1, 8).eval()
    classifier = ConvClassifier(1, 8, 3, channels=[4], embed_dim=8).eval()
    classifier.class_names = ["0", "1", "2"]
    return unet, states, vae, classifier


def test_guidance_combines_conditional_and_unconditional_predictions(parts) -> None:
    unet, states, _, _ = parts
    x, t = torch.randn(2, 4, 4, 4), torch.tensor([10, 700])
    cond = torch.from_numpy(np.stack([states["a 1"], states["a 2"]]))
    uncond = torch.from_numpy(states[""])
    with torch.no_grad():
        e_c = unet(x, t, encoder_hidden_states=cond).sample
        e_u = unet(x, t, encoder_hidden_states=uncond.expand_as(cond)).sample
        torch.testing.assert_close(GuidedUNet(unet, cond, uncond, 1.0)(x, t).sample, e_c)
        torch.testing.assert_close(
            GuidedUNet(unet, cond, uncond, 3.0)(x, t).sample, e_u + 3.0 * (e_c - e_u)
        )
        torch.testing.assert_close(GuidedUNet(unet, cond, uncond, 0.0)(x, t).sample, e_u)


def test_prompted_completions_run_under_each_targets_prompt_and_decode(parts) -> None:
    unet, states, vae, _ = parts
    schedule, step, n, seed = Schedule(), 400, 3, 5
    x_t = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    decode_latents = lambda z: decode(vae, z, 0.5)  # noqa: E731
    prompted = PromptedCompletions(
        torch.from_numpy(np.stack([states["a 1"], states["a 2"]])),
        torch.from_numpy(states[""]), 2.0, decode_latents,
    )  # fmt: skip
    run = lambda batch: sample_completions(  # noqa: E731
        unet, schedule, x_t, step, [7, 8], n, 10, seed, batch, prompted
    )
    images = run(100)
    assert images.shape == (2, n, 1, 8, 8) and images.abs().max() <= 1
    torch.testing.assert_close(images, run(2), rtol=1e-4, atol=1e-4)  # batch layout
    # brute force: target 1 alone, under its own prompt, with its own generators, decoded
    timesteps = schedule.inference_timesteps(10, start=step)
    cond = torch.from_numpy(states["a 2"]).expand(n, 3, 8)
    guided = GuidedUNet(unet, cond, torch.from_numpy(states[""]), 2.0)
    latents, _ = sample(
        guided, schedule, x_t[1:].repeat(n, 1, 1, 1), timesteps,
        completion_generators(seed, 8, step, n), clip=False,
    )  # fmt: skip
    torch.testing.assert_close(images[1], decode_latents(latents), rtol=1e-4, atol=1e-4)
    swapped = PromptedCompletions(prompted.states.flip(0), prompted.empty, 2.0, decode_latents)
    other = sample_completions(unet, schedule, x_t, step, [7, 8], n, 10, seed, 100, swapped)
    assert not torch.allclose(images, other, atol=1e-3)  # the prompt steers the completion


def test_prompt_samples_are_seeded_per_sample(parts) -> None:
    unet, states, _, _ = parts
    run = lambda count: prompt_latents(unet, Schedule(), states, "a 1", 1, count, 2.0, 5, 7)[0]  # noqa: E731
    four, two = run(4), run(2)
    # sample j does not depend on how many are drawn (up to batched float rounding)
    torch.testing.assert_close(four[:2], two, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"'a 3' has no cached text states"):
        prompt_latents(unet, Schedule(), states, "a 3", 0, 1, 1.0, 5, 7)


def test_prompt_following_counts_the_classifiers_agreement(parts) -> None:
    unet, states, vae, classifier = parts
    prompts = [{"text": "a 1", "label": "1"}, {"text": "a 2", "label": "2"}, {"text": "a 2"}]
    table, images = prompt_following(
        unet, Schedule(), vae, 1.0, classifier, states, prompts, [1.0, 2.0], 3, 5, 7
    )
    assert images[2.0].shape == (9, 1, 8, 8)
    first = images[1.0][:3]
    expected = int((predict_proba(classifier, first).argmax(1) == 1).sum())
    row = table[(table["prompt"] == "a 1") & (table["guidance"] == 1.0)].iloc[0]
    assert row["agree"] == expected and row["n"] == 3
    pooled = table[(table["prompt"] == "(all prompts)") & (table["guidance"] == 2.0)].iloc[0]
    assert pooled["n"] == 6  # the unlabelled prompt is sampled but not counted
    assert pooled["ci_low"] <= pooled["rate"] <= pooled["ci_high"]
    with pytest.raises(ValueError, match=r"sampling\.prompts\[0\]\.label = '7' is not a class"):
        prompt_following(
            unet, Schedule(), vae, 1.0, classifier, states, [{"text": "a 1", "label": "7"}],
            [1.0], 1, 5, 7,
        )  # fmt: skip


def test_prompted_targets_cycle_the_prompts_and_record_latent_trajectories(parts) -> None:
    unet, states, vae, _ = parts
    prompts = [{"text": "a 1", "label": "1"}, {"text": "a 2", "label": None}]
    grid = [600, 0]
    args = (unet, Schedule(), vae, 2.0, states, prompts, ["0", "1", "2"])
    arrays = prompted_targets(*args, 5, grid, 5, 3.0, 7)
    check_targets(arrays)
    assert arrays["prompt"].tolist() == ["a 1", "a 2", "a 1", "a 2", "a 1"]
    assert arrays["label"].tolist() == [1, -1, 1, -1, 1]
    assert arrays["x_t"].shape == (5, 2, 4, 4, 4) and arrays["decoded_x0hat"].shape == (
        5,
        2,
        1,
        8,
        8,
    )
    # target 2 is sample 1 of prompt 0, with the trajectory that sampling records
    x0, recorded = prompt_latents(unet, Schedule(), states, "a 1", 0, 3, 3.0, 5, 7,
                                  stream=5, record=grid)  # fmt: skip
    np.testing.assert_allclose(arrays["x0"][2], x0[1].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arrays["x0hat"][2, 0], recorded[600][1][1].numpy(), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    assert np.abs(arrays["x0hat"]).max() > 0 and np.abs(arrays["decoded_x0"]).max() <= 1
    with pytest.raises(ValueError, match=r"sampling\.prompts\[0\]\.label = '7'"):
        prompted_targets(unet, Schedule(), vae, 2.0, states, [{"text": "a 1", "label": "7"}],
                         ["0", "1"], 1, grid, 5, 3.0, 7)  # fmt: skip
