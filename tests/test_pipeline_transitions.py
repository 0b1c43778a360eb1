"""The pretrained pipeline's feature transitions (stepattr.stable_diffusion.pretrained_curves).

A plumbing test: a tiny StableDiffusionPipeline and a tiny CLIP with random weights, built
here; the sampler is checked against diffusers' own pipeline call, the detector against
CLIP's logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_pipeline

from stepattr.stable_diffusion.export import load_pipeline
from stepattr.stable_diffusion.figure import pipeline_transitions_figure
from stepattr.stable_diffusion.pretrained_curves import (
    AncestralSampler,
    Feature,
    PipelineTransitionsSettings,
    check_prompts,
    features_from_config,
    generators,
    grid_positions,
    interval_rows,
    load_zero_shot,
    pipeline_transitions,
    summary_rows,
)

PROMPT = "a handwritten digit 3"
DIGITS = Feature("digit", [f"a handwritten digit {d}" for d in range(10)])
PAIR = Feature("one_or_seven", ["a handwritten digit 1", "a handwritten digit 7"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """The tiny pipeline, loaded, and its text room's CLIP folder."""
    root = tmp_path_factory.mktemp("pipeline_transitions")
    return load_pipeline(tiny_pipeline(root)), root / "parts" / "text" / "clip"


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_sampler_is_the_pipelines_own_ddpm_sampling(built, guidance: float) -> None:
    pipeline, _ = built
    sampler = AncestralSampler(pipeline, 10, guidance)
    gens = generators(0, 1, count=2)
    ours, _ = sampler.run(sampler.noise(gens), 0, sampler.states(PROMPT), gens)
    theirs = pipeline(
        prompt=[PROMPT] * 2, num_inference_steps=10, guidance_scale=guidance,
        generator=generators(0, 1, count=2), output_type="latent",
    ).images  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)  # float order of the CFG batch


def test_a_run_resumed_from_kept_latents_ends_where_the_trajectory_ends(built) -> None:
    """Completions start from a kept x_t at its scheduler position: with a generator advanced
    past the draws already made (the initial noise, one per earlier step), the resumed run
    reproduces the uninterrupted trajectory."""
    pipeline, _ = built
    sampler = AncestralSampler(pipeline, 10, 1.0)
    states = sampler.states(PROMPT)
    gens = generators(0, 2, count=1)
    end, kept = sampler.run(sampler.noise(gens), 0, states, gens, keep=[4])
    resumed = generators(0, 2, count=1)
    sampler.noise(resumed)
    for _ in range(4):  # DDPM draws one noise per step before the last
        torch.randn((1, *sampler.shape), generator=resumed[0])
    again, _ = sampler.run(kept[4], 4, states, resumed)
    torch.testing.assert_close(again, end)


def test_grid_maps_to_the_nearest_scheduler_steps() -> None:
    timesteps = [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert grid_positions(timesteps, [900, 500, 0]) == [0, 4, 9]
    with pytest.raises(
        ValueError,
        match=r"repeated scheduler steps \[901, 901, 1\]: raise pipeline.transitions.inference",
    ):
        grid_positions([901, 501, 1], [900, 800, 0])


def test_zero_shot_choice_is_clips_argmax(built) -> None:
    from transformers import CLIPModel, CLIPTokenizer

    _, clip_dir = built
    detector = load_zero_shot(clip_dir, [DIGITS, PAIR])
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    chosen = detector.choose(images, batch_size=4)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
    for f, feature in enumerate((DIGITS, PAIR)):
        ids = tokenizer(feature.prompts, padding="max_length", max_length=10, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=ids.input_ids, pixel_values=images).logits_per_image
        np.testing.assert_array_equal(chosen[:, f], logits.argmax(1).numpy())


def test_curves_and_intervals(built) -> None:
    pipeline, clip_dir = built
    detector = load_zero_shot(clip_dir, [DIGITS, PAIR])
    cfg = PipelineTransitionsSettings(
        clip=str(clip_dir), prompts=("", PROMPT), features=(DIGITS, PAIR), trajectories=2,
        completions=3, inference_steps=10, guidance=1.0, figure_trajectories=1, seed=0,
    )  # fmt: skip
    curves, images = pipeline_transitions(pipeline, detector, cfg, [900, 500, 0])
    assert len(curves) == 2 * 2 * 3 * 2  # prompts x trajectories x grid steps x features
    assert curves["p"].between(0, 1).all() and (curves["ci_low"] <= curves["p"]).all()
    assert sorted(curves["step"].unique()) == [1, 501, 901]
    # from the last step's x_t the DDPM step adds no noise: every completion is the final image
    assert (curves.loc[curves["step"] == 1, "p"] == 1).all()
    assert images["final"].shape == (4, 1, 8, 8) and images["x_t"].shape == (4, 3, 1, 8, 8)
    again, _ = pipeline_transitions(pipeline, detector, cfg, [900, 500, 0])
    assert curves.equals(again)  # every draw is keyed, nothing depends on global state
    intervals = interval_rows(curves)
    assert len(intervals) == 8 and (intervals["t_start"] > intervals["t_end"]).all()
    summary = summary_rows(intervals)
    assert summary["trajectories"].tolist() == [2, 2, 2, 2]
    fig = pipeline_transitions_figure(
        curves, intervals, images["final"].numpy(), images["x_t"].numpy(), 1
    )
    assert len(fig.axes) == 2 * (4 + 2)  # 2 rows: 3 x_t + x_0, and one curve per feature


def test_bad_detector_and_prompts_are_named(built, tmp_path: Path) -> None:
    pipeline, _ = built
    with pytest.raises(ValueError, match=r"pipeline.transitions.clip = .*not a transformers CLIP"):
        load_zero_shot(tmp_path, [DIGITS])
    check_prompts(pipeline, ["", PROMPT])  # the empty prompt is the unconditional model
    with pytest.raises(ValueError, match=r"pipeline.transitions.prompts\[1\] = .* tokens"):
        check_prompts(pipeline, ["", " ".join(["digit"] * 20)])
    with pytest.raises(ValueError, match=r"names repeat"):
        features_from_config([{"name": "a", "prompts": ["x", "y"]}] * 2)


@pytest.mark.parametrize("offset", [0, 1])
def test_the_visited_steps_are_diffusers_ddpm_steps(offset: int) -> None:
    """One statement of the visited timesteps (Schedule.inference_timesteps) serves both
    families: a pipeline's scheduler config maps to the same steps diffusers would visit."""
    from diffusers import DDPMScheduler

    from stepattr.core.diffusion import Schedule

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", steps_offset=offset, clip_sample=False)
    schedule, steps_offset, clip = Schedule.from_scheduler_config(scheduler.config)
    scheduler.set_timesteps(25)
    assert schedule.inference_timesteps(25, offset=steps_offset) == scheduler.timesteps.tolist()
    torch.testing.assert_close(
        schedule.alphas_cumprod.float(), scheduler.alphas_cumprod, rtol=1e-6, atol=1e-7
    )
    assert (steps_offset, clip) == (offset, False)


def test_a_scheduler_the_sampler_would_not_follow_is_refused_by_key() -> None:
    from diffusers import DDPMScheduler

    from stepattr.core.diffusion import Schedule

    config = DDPMScheduler(prediction_type="v_prediction").config
    with pytest.raises(ValueError, match=r"prediction_type = 'v_prediction'.*'epsilon' only"):
        Schedule.from_scheduler_config(config)
