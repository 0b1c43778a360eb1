"""Feature transitions: Wilson CIs, steepest-rise intervals, completions, feature attribution,
detector choice and the CLIP plumbing (tiny models, seconds)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TINY_UNET

from stepattr.core.diffusion import Schedule, build_unet
from stepattr.detectors.classifier import (
    ClassifierSettings,
    architecture,
    save_classifier,
    train_classifier,
)
from stepattr.detectors.clip import (
    ClipUnavailable,
    cached_pretrained_file,
    clip_prompts,
    load_clip,
)
from stepattr.detectors.detector import Detector, load_detector
from stepattr.detectors.wilson import wilson_interval
from stepattr.transitions.curves import (
    CURVE_COLUMNS,
    completion_classes,
    curve_table,
    interval_table,
    sample_completions,
    steepest_rise,
    target_features,
)
from stepattr.transitions.feature_attribution import (
    influencer_fractions,
    phase_steps,
    summarize,
    top_influencers,
)

# ----------------------------------------------------------------------------- Wilson CI


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score, no correction)
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_contains_the_proportion_exactly():
    n = np.repeat(np.arange(1, 101), np.arange(2, 102))
    k = np.concatenate([np.arange(m + 1) for m in range(1, 101)])
    low, high = wilson_interval(k, n)
    assert ((low <= k / n) & (k / n <= high)).all()  # rounding once put low at 1e-17 above 0 / n
    assert (low[k == 0] == 0).all() and (high[k == n] == 1).all()


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


# ----------------------------------------------------------------------------- intervals


def test_steepest_rise_on_a_synthetic_curve():
    steps = [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    p = 1 / (1 + np.exp(-(550 - np.array(steps)) / 30))  # rises fastest around t = 550
    assert steepest_rise(steps, p)[:2] == (600, 500)
    # the grid's order does not matter: pairs are taken from high t to low t
    assert steepest_rise(steps[::-1], p[::-1])[:2] == (600, 500)
    # ties go to the earliest pair (highest t); a flat curve gives the first pair, rise 0
    assert steepest_rise([3, 2, 1, 0], [0.0, 0.5, 0.5, 1.0]) == (3, 2, 0.5)
    assert steepest_rise([2, 1, 0], [1.0, 1.0, 1.0]) == (2, 1, 0.0)
    with pytest.raises(ValueError):
        steepest_rise([5], [0.2])


def test_curve_and_interval_tables():
    classes = np.array([[[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]])  # 1 target, 3 steps, n=4
    curves = curve_table(classes, np.array([1]), [20, 10, 0], [7], "fake")
    assert list(curves.columns) == CURVE_COLUMNS
    np.testing.assert_allclose(curves["p"], [0.5, 0.75, 1.0])
    assert (curves["ci_low"] <= curves["p"]).all() and (curves["p"] <= curves["ci_high"]).all()
    row = interval_table(curves).iloc[0]
    assert (row["t_start"], row["t_end"], row["transition_step"]) == (20, 10, 15.0)
    assert row["rise"] == pytest.approx(0.25) and row["feature"] == 1


# ----------------------------------------------------------------------------- completions


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return build_unet(TINY_UNET, 8, 1).eval()


def test_completions_shape_and_determinism(tiny_unet):
    schedule = Schedule()
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kwargs = {"step": 500, "target_ids": [3, 9], "completion_steps": 10}
    a = sample_completions(tiny_unet, schedule, x_t, n=3, seed=0, batch_size=100, **kwargs)
    assert a.shape == (2, 3, 1, 8, 8) and a.abs().max() <= 1
    # the batch layout and the number of completions drawn do not change a completion
    b = sample_completions(tiny_unet, schedule, x_t, n=3, seed=0, batch_size=4, **kwargs)
    torch.testing.assert_close(a, b)
    c = sample_completions(tiny_unet, schedule, x_t, n=2, seed=0, batch_size=4, **kwargs)
    torch.testing.assert_close(a[:, :2], c)
    # completions differ from each other and with the seed
    assert not torch.allclose(a[:, 0], a[:, 1])
    d = sample_completions(tiny_unet, schedule, x_t, n=3, seed=1, batch_size=100, **kwargs)
    assert not torch.allclose(a, d)


def mean_sign_detector() -> Detector:
    """Class 1 where the mean pixel is positive: a stand-in detector with known behaviour."""

    def proba(images):
        pos = torch.as_tensor(np.asarray(images)).float().mean(dim=(1, 2, 3)) > 0
        return torch.stack([~pos, pos], dim=1).float().numpy()

    return Detector("mean-sign", ["dark", "bright"], proba)


def test_completion_classes_and_features(tiny_unet):
    grid = [900, 100, 0]
    x_t = torch.randn(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(2)).numpy()
    detector = mean_sign_detector()
    classes = completion_classes(
        tiny_unet,
        Schedule(),
        x_t,
        grid,
        [0, 1],
        detector,
        n=4,
        completion_steps=10,
        seed=0,
        batch_size=5,
    )
    assert classes.shape == (2, 3, 4) and set(np.unique(classes)) <= {0, 1}
    # at t = 0 the completion is one clipped denoising step: deterministic, all n agree
    assert (classes[:, 2] == classes[:, 2, :1]).all()
    x0 = np.stack([np.full((1, 8, 8), -0.5), np.full((1, 8, 8), 0.5)]).astype(np.float32)
    np.testing.assert_array_equal(target_features(detector, x0, np.array([-1, -1])), [0, 1])
    np.testing.assert_array_equal(target_features(detector, x0, np.array([1, -1])), [1, 1])


# ----------------------------------------------------------------------------- attribution


def test_phase_steps():
    grid = [900, 600, 300, 0]
    assert phase_steps(grid, 600, 300) == {"before": 900, "inside": 600, "after": 300}
    assert phase_steps(grid[::-1], 900, 600) == {"before": None, "inside": 900, "after": 600}
    with pytest.raises(ValueError, match="adjacent"):
        phase_steps(grid, 900, 300)


def test_fractions_on_a_hand_made_example():
    labels = np.array([0, 1, 1, 2, 1, 0])
    scores = np.zeros((2, 3, 6), dtype=np.float32)  # rows: (generated 5), (validation 8)
    scores[0, 0] = [5, 4, 3, 2, 1, 0]  # step 20 (before): top2 = {0, 1}, bottom2 = {5, 4}
    scores[0, 1] = [0, 9, 8, 1, 2, 3]  # step 10 (inside): top2 = {1, 2}, bottom2 = {0, 3}
    scores[0, 2] = [1, 2, 3, 4, 5, 6]  # step 0 (after): top2 = {5, 4}, bottom2 = {0, 1}
    index = pd.DataFrame(
        {"row": [0, 1], "target_set": ["generated", "validation"], "target_id": [5, 8]}
    )
    intervals = pd.DataFrame(
        {
            "target_set": ["generated"],
            "target_id": [5],
            "feature": [1],
            "t_start": [10],
            "t_end": [0],
            "transition_step": [5.0],
        }
    )
    out = influencer_fractions(scores, index, [20, 10, 0], intervals, labels, k=2)
    got = out.set_index("phase")
    assert list(got.index) == ["before", "inside", "after"]
    assert got.loc["before", ["frac_positive", "frac_negative"]].tolist() == [0.5, 0.5]
    assert got.loc["inside", ["frac_positive", "frac_negative"]].tolist() == [1.0, 0.0]
    assert got.loc["after", ["frac_positive", "frac_negative"]].tolist() == [0.5, 0.5]
    assert got.loc["inside", "top_positive"] == "1 2" and got.loc["inside", "step"] == 10
    assert got["chance"].tolist() == [0.5] * 3
    summary = summarize(out, intervals)
    row = summary[(summary["target_set"] == "all") & (summary["phase"] == "inside")].iloc[0]
    assert row["frac_positive"] == 1.0 and row["n_targets"] == 1
    assert row["median_transition_step"] == 5.0


def test_top_influencers_order_and_bounds():
    pos, neg = top_influencers(np.array([0.1, -2.0, 3.0, 0.5]), 2)
    assert pos.tolist() == [2, 3] and neg.tolist() == [1, 0]
    with pytest.raises(ValueError, match="top_k"):
        top_influencers(np.zeros(3), 4)


# ----------------------------------------------------------------------------- detectors


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    cfg = ClassifierSettings.from_config({
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.01,
        "weight_decay": 0.0,
        "channels": [4],
        "embed_dim": 8,
        "dropout": 0.0,
        "max_shift": 0,
        "threads": 1,
        "seed": 0,
    })  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (32, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 3, 32)
    model, _ = train_classifier(x, y, x, y, ["zero", "one", "two"], cfg)
    out = tmp_path_factory.mktemp("classifier")
    save_classifier(out, model, architecture(cfg, 1, 8, 3))
    return out


def test_detector_falls_back_to_the_classifier(classifier_dir, caplog):
    clip_cfg = {"model": "ViT-B-32", "weights": None, "prompts": None, "template": "a {}"}
    with caplog.at_level(logging.WARNING):
        det = load_detector("auto", classifier_dir, clip_cfg)
    assert det.name == "classifier" and "clip.weights is null" in caplog.text
    assert det.predict_proba(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="transitions.detector = clip"):
        load_detector("clip", classifier_dir, clip_cfg)


def test_clip_prompts():
    cfg = {"prompts": None, "template": "a photo of the digit {}"}
    assert clip_prompts(cfg, ["0", "1"]) == ["a photo of the digit 0", "a photo of the digit 1"]
    assert clip_prompts({**cfg, "prompts": ["x", "y"]}, ["0", "1"]) == ["x", "y"]
    with pytest.raises(ValueError, match="one prompt per class"):
        clip_prompts({**cfg, "prompts": ["x"]}, ["0", "1"])


def test_clip_weights_never_downloaded(tmp_path):
    """A known tag that is not in the (empty) cache is unavailable; an unknown tag too."""
    assert cached_pretrained_file("ViT-B-32", "openai", cache_dir=str(tmp_path)) is None
    cfg = {"model": "ViT-B-32", "weights": "openai", "prompts": None, "template": "a {}"}
    with pytest.raises(ClipUnavailable, match="not in the local cache"):
        load_clip(cfg, ["a", "b"], cache_dir=str(tmp_path))
    with pytest.raises(ClipUnavailable, match="neither a file nor"):
        load_clip({**cfg, "weights": "no-such-tag"}, ["a", "b"])


def test_clip_plumbing_with_random_weights(tmp_path, classifier_dir):
    """Plumbing only: a randomly initialised tiny open_clip model, saved to a local file and
    loaded the way a configured weights file is; its probabilities mean nothing."""
    import open_clip
    from safetensors.torch import save_file

    name = "stepattr-test-tiny-clip"
    (tmp_path / f"{name}.json").write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {
                    "image_size": 32,
                    "layers": 1,
                    "width": 32,
                    "patch_size": 16,
                    "head_width": 16,
                },
                "text_cfg": {
                    "context_length": 77,
                    "vocab_size": 49408,
                    "width": 32,
                    "heads": 2,
                    "layers": 1,
                },
            }
        )
    )
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    cfg = {"model": name, "weights": str(weights), "prompts": None, "template": "a digit {}"}
    clip = load_clip(cfg, ["zero", "one", "two"])
    assert clip.prompts == ["a digit zero", "a digit one", "a digit two"]
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    proba = clip.predict_proba(images, batch_size=2)
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clip.preprocess(images).shape == (5, 3, 32, 32)
    # the loaded weights are the saved ones
    for key, value in model.state_dict().items():
        torch.testing.assert_close(clip.model.state_dict()[key], value)
    det = load_detector("auto", classifier_dir, cfg)
    assert det.name.startswith("clip:") and det.classify(images).shape == (5,)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_clip({**cfg, "weights": str(tmp_path / "bad.safetensors")}, ["a", "b", "c"])


def test_transitions_figure_layout():
    """One curve plus, per phase, x0hat and `shown` positive and negative influencers."""
    from stepattr.transitions.figure import choose_targets, transitions_figure

    grid = [20, 10, 0]
    classes = np.array([[[0, 0, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]]] * 2)
    curves = curve_table(classes, np.array([1, 1]), grid, [0, 1], "fake")
    intervals = interval_table(curves).assign(target_set="generated")
    intervals.loc[1, "rise"] = 0.1  # target 0 rises most and is chosen first
    curves = curves.assign(target_set="generated")
    labels = np.array([0, 1, 1, 2, 1, 0])
    scores = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    index = pd.DataFrame({"row": [0, 1], "target_set": ["generated"] * 2, "target_id": [0, 1]})
    influencers = influencer_fractions(scores, index, grid, intervals, labels, k=3)
    chosen = choose_targets(intervals, 1)
    assert chosen["target_id"].tolist() == [0]
    x0hat = {("generated", t): np.zeros((3, 1, 8, 8), np.float32) for t in (0, 1)}
    fig = transitions_figure(
        chosen, curves, influencers, x0hat, grid, np.zeros((6, 1, 8, 8)), labels, list("abc"), 2
    )
    # interval (20, 10) at the top of the grid: no "before" step, so two phase rows
    assert len(fig.axes) == 1 + 2 * (1 + 2 * 2)
