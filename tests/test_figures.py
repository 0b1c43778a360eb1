"""Figures: top-k selection, patch masks, masked target features, and the figure/GIF writers."""

from __future__ import annotations

import copy
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from stepattr.core.diffusion import Schedule, build_unet
from stepattr.core.io import save_json
from stepattr.figures import jobs
from stepattr.figures.influencers import (
    TrainingImages,
    Trajectory,
    influencer_figure,
    step_influencers,
)
from stepattr.figures.patches import (
    FiguresSettings,
    Patch,
    check_figures_config,
    configured_patches,
    patch_mask,
    patch_target_features,
    quadrant_patches,
)
from stepattr.targets.generate import save_targets
from stepattr.trak.features import make_featurizer, target_features
from stepattr.trak.scores import trak_scores
from stepattr.trak.storage import save_features
from stepattr.workflow.configs import load_config

GRID = [900, 500, 0]
SIZE = 8


@pytest.fixture(scope="module")
def ci_config(repo) -> dict:
    return load_config([repo / "config" / "ci.yaml"])


# ----------------------------------------------------------------------------- selection


def test_step_influencers_hand_example():
    scores = np.array(
        [
            [0.5, -1.0, 2.0, 0.0, -3.0],  # t = 900
            [-0.2, 0.3, 0.1, 0.9, -0.1],  # t = 500
            [1.0, 1.0, -1.0, -1.0, 0.0],  # t = 0: ties keep training order
        ]
    )
    steps = step_influencers(scores, GRID, 2)
    assert [s.step for s in steps] == GRID
    assert steps[0].positive.tolist() == [2, 0] and steps[0].negative.tolist() == [4, 1]
    assert steps[1].positive.tolist() == [3, 1] and steps[1].negative.tolist() == [0, 4]
    assert steps[2].positive.tolist() == [0, 1] and steps[2].negative.tolist() == [2, 3]
    with pytest.raises(ValueError, match="grid"):
        step_influencers(scores, GRID[:2], 2)


# ----------------------------------------------------------------------------- patches


@pytest.mark.parametrize("size", [8, 9, 16])
def test_quadrant_masks_partition_the_image(size):
    masks = np.stack([patch_mask(p, size) for p in quadrant_patches(size)])
    assert masks.shape == (4, size, size)
    assert set(np.unique(masks).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(masks.sum(axis=0), np.ones((size, size)))
    assert (masks.sum(axis=(1, 2)) >= (size // 2) ** 2).all()


def test_patch_box_is_columns_then_rows():
    mask = patch_mask(Patch("p", (1, 2, 4, 3)), 5)  # columns 1..3, row 2
    want = np.zeros((5, 5), dtype=np.float32)
    want[2, 1:4] = 1
    np.testing.assert_array_equal(mask, want)


def test_configured_patches_named_then_quadrants(ci_config):
    figures = FiguresSettings.from_config(ci_config["figures"])
    names = [p.name for p in configured_patches(figures, SIZE)]
    assert names == ["center", "top-left", "top-right", "bottom-left", "bottom-right"]
    no_quadrants = dataclasses.replace(figures, quadrants=False)
    assert [p.name for p in configured_patches(no_quadrants, SIZE)] == ["center"]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("patches", {"big": [0, 0, 9, 4]}, "figures.patches.big"),
        ("patches", {"empty": [3, 0, 3, 4]}, "figures.patches.empty"),
        ("patches", {"top-left": [0, 0, 2, 2]}, "taken by a quadrant"),
        ("patch_steps", [500, 400], r"figures.patch_steps \[400\]"),
        ("patch_targets", [0, 6], r"figures.patch_targets = \[6\]"),
        ("overview_targets", [10], "figures.overview_targets"),
        ("method", "pixel", "figures.method"),
    ],
)
def test_check_figures_config_names_the_key(ci_config, key, value, match):
    check_figures_config(ci_config)
    cfg = copy.deepcopy(ci_config)
    cfg["figures"][key] = value
    with pytest.raises(ValueError, match=match):
        check_figures_config(cfg)


def test_influencer_figures_may_draw_an_influence_method(ci_config):
    """figures.method may name an influence method (ekfac); the patch attribution, which needs
    projected features, then stays with TRAK (rules/functions/figures.smk: patch_method)."""
    cfg = copy.deepcopy(ci_config)
    cfg["figures"]["method"] = "ekfac"
    check_figures_config(cfg)
    cfg["influence"]["methods"] = []
    with pytest.raises(ValueError, match="influence method"):
        check_figures_config(cfg)


@pytest.fixture(scope="module")
def featurizer():
    """A very small UNet (~11k parameters), float64 so sums compare tightly; one torch thread
    (tiny batches only lose to thread start-up), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = {
        "block_out_channels": [4, 8],
        "layers_per_block": 1,
        "attention_levels": [],
        "norm_num_groups": 4,
    }
    model = build_unet(cfg, SIZE, 1).to(torch.float64).eval()
    yield make_featurizer(model, "loss", Schedule().alphas_cumprod, "rademacher", 32, seed=3)
    torch.set_num_threads(threads)


def test_masked_features_all_ones_equal_unmasked(featurizer):
    gen = torch.Generator().manual_seed(0)
    x0hat = torch.rand(2, 2, 1, SIZE, SIZE, generator=gen, dtype=torch.float64) * 2 - 1
    ids, steps = [3, 7], [500, 100]
    masked = patch_target_features(
        featurizer, x0hat, ids, steps, [Patch("all", (0, 0, SIZE, SIZE))], 2, 0, 8
    )
    unmasked = target_features(featurizer, x0hat, ids, steps, 2, 0, 8)
    assert masked.shape == (2, 1, 2, 32)
    np.testing.assert_array_equal(masked[:, 0], unmasked)
    # a 0/1 mask squares to itself, so f_t is the sum of its quadrants' f_t, and so are the
    # (linear) projected gradients; and a quadrant alone is not the whole image
    quadrants = patch_target_features(
        featurizer, x0hat, ids, steps, quadrant_patches(SIZE), 2, 0, 8
    )
    np.testing.assert_allclose(quadrants.sum(axis=1), unmasked, rtol=1e-5, atol=1e-6)
    assert not np.allclose(quadrants[:, 0], unmasked, rtol=1e-3)


# ----------------------------------------------------------------------------- writers


def synthetic_run(tmp_path, n_train=40, k_feat=6, models=("full_0", "full_1")):
    """Target sets, a training split, scores files, features and lambda, all synthetic."""
    rng = np.random.default_rng(0)
    sets = {"generated": (0, 3), "validation": (3, 2)}
    paths = []
    for name, (first, n) in sets.items():
        x0 = rng.uniform(-1, 1, (n, 1, SIZE, SIZE)).astype(np.float32)
        arrays = {
            "x_t": rng.standard_normal((n, len(GRID), 1, SIZE, SIZE)).astype(np.float32),
            "x0hat": np.repeat(x0[:, None], len(GRID), axis=1),
            "x0": x0,
            "grid": np.asarray(GRID, dtype=np.int64),
            "target_id": np.arange(first, first + n, dtype=np.int64),
            "label": np.full(n, -1 if name == "generated" else 4, dtype=np.int64),
            "source_index": np.full(n, -1, dtype=np.int64)
            if name == "generated"
            else np.arange(n, dtype=np.int64),
        }
        paths.append(tmp_path / f"{name}.npz")
        save_targets(paths[-1], arrays)
    train = tmp_path / "train.npz"
    np.savez(
        train,
        images=rng.integers(0, 256, (n_train, 1, SIZE, SIZE), dtype=np.uint8),
        labels=np.arange(n_train, dtype=np.int64) % 10,
        class_names=np.array([str(c) for c in range(10)]),
    )
    index = pd.DataFrame(
        {
            "row": np.arange(5),
            "target_set": ["generated"] * 3 + ["validation"] * 2,
            "target_id": np.arange(5),
            "label": [-1, -1, -1, 4, 4],
        }
    )
    index.to_csv(tmp_path / "index.csv", index=False)
    np.save(
        tmp_path / "scores.npy", rng.standard_normal((5, len(GRID), n_train)).astype(np.float32)
    )
    save_json(
        tmp_path / "meta.json",
        {"method": "trak", "grid": GRID, "lambda": 0.1, "models": list(models)},
    )
    scores = {name: str(tmp_path / f"{name}.{ext}") for name, ext in jobs_parts()}
    return list(map(str, paths)), list(sets), str(train), scores


def jobs_parts():
    return [("scores", "npy"), ("index", "csv"), ("meta", "json")]


PROVENANCE = {"config_files": ["config/ci.yaml"], "config_overrides": {}}


def test_influencer_job_writes_png_and_gif(tmp_path):
    targets, sets, train, scores = synthetic_run(tmp_path)
    png, gif = tmp_path / "out" / "validation_4.png", tmp_path / "out" / "validation_4.gif"
    jobs.influencer_job(scores, targets, sets, train, "validation", 4, 2, 300, png, gif, PROVENANCE)
    with Image.open(png) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= 4 * 64 and height >= 8 * 64  # 1 + 3 columns, 2 + 2 * 2 rows of tiles
    with Image.open(gif) as anim:
        assert anim.format == "GIF" and anim.n_frames == len(GRID)
        assert anim.info["loop"] == 0
        sizes = set()
        for frame in range(anim.n_frames):
            anim.seek(frame)
            sizes.add(anim.size)
    assert len(sizes) == 1
    with pytest.raises(ValueError, match="no single row"):
        jobs.influencer_job(
            scores, targets, sets, train, "generated", 4, 2, 300, png, gif, PROVENANCE
        )


def test_influencer_tiles_are_upscaled_enough(tmp_path):
    """Every image tile is drawn at least 4 screen pixels per image pixel (nearest neighbour)."""
    rng = np.random.default_rng(1)
    target = Trajectory(
        "t",
        rng.uniform(-1, 1, (1, 16, 16)),
        rng.uniform(-1, 1, (10, 1, 16, 16)),
        rng.uniform(-1, 1, (10, 1, 16, 16)),
        tuple(range(900, -1, -100)),
    )
    train = TrainingImages(
        rng.integers(0, 256, (30, 1, 16, 16), dtype=np.uint8), np.zeros(30, int), ["zero"]
    )
    steps = step_influencers(rng.standard_normal((10, 30)), target.grid, 3)
    fig = influencer_figure([(target, steps)] * 2, train, "heading")
    fig.set_dpi(jobs.DPI)
    fig.canvas.draw()
    images = [im for ax in fig.get_axes() for im in ax.get_images()]
    assert len(images) == 2 * (1 + 10 * (2 + 6))
    for im in images:
        assert im.get_interpolation() == "nearest"
        extent = im.get_window_extent()
        assert min(extent.width, extent.height) >= 4 * 16
    plt.close(fig)


def test_overview_job_draws_each_target(tmp_path):
    targets, sets, train, scores = synthetic_run(tmp_path)
    png = tmp_path / "influencers.png"
    jobs.overview_job(scores, targets, sets, train, [0, 3], 2, png, PROVENANCE)
    with Image.open(png) as two:
        jobs.overview_job(scores, targets, sets, train, [0], 2, png, PROVENANCE)
        with Image.open(png) as one:
            assert two.size[0] == one.size[0] and two.size[1] > 1.8 * one.size[1] - 200
    with pytest.raises(ValueError, match=r"target ids \[9\]"):
        jobs.overview_job(scores, targets, sets, train, [9], 2, png, PROVENANCE)


def test_patch_scores_job_scores_patch_features(tmp_path, ci_config):
    targets, sets, train, _ = synthetic_run(tmp_path)
    figures = FiguresSettings.from_config(
        {**ci_config["figures"], "patch_targets": [1, 3], "patch_steps": [500, 0]}
    )
    patches = configured_patches(figures, SIZE)
    rng = np.random.default_rng(2)
    identity = {"featurizer": {"kind": "test"}, "model_sha256": "abc"}
    train_paths, patch_paths, train_feats, patch_feats = [], [], [], []
    for m in ("full_0", "full_1"):
        train_feats.append(rng.standard_normal((40, 6)).astype(np.float32))
        patch_feats.append(rng.standard_normal((2 * len(patches), 2, 6)).astype(np.float32))
        train_paths.append(tmp_path / m / "train.npy")
        patch_paths.append(tmp_path / m / "patches.npy")
        save_features(train_paths[-1], train_feats[-1], "float32", identity)
        save_features(patch_paths[-1], patch_feats[-1], "float32", identity)
    save_json(tmp_path / "lambda.json", {"lambda": 0.5})
    out = {name: tmp_path / "patches" / f"{name}.{ext}" for name, ext in jobs_parts()}
    jobs.patch_scores_job(
        "trak",
        ["full_0", "full_1"],
        train_paths,
        patch_paths,
        tmp_path / "lambda.json",
        targets,
        sets,
        figures,
        out,
        PROVENANCE,
    )
    scores = np.load(out["scores"])
    np.testing.assert_allclose(scores, trak_scores(train_feats, patch_feats, 0.5), rtol=1e-6)
    index = pd.read_csv(out["index"])
    assert index["target_id"].tolist() == [1] * len(patches) + [3] * len(patches)
    assert index["patch"].tolist() == [p.name for p in patches] * 2
    assert index.loc[0, ["x0", "y0", "x1", "y1"]].tolist() == [2, 2, 6, 6]

    png = tmp_path / "patches.png"
    jobs.patch_figure_job(
        {name: str(out[name]) for name in out},
        synthetic_run(tmp_path)[3],
        targets,
        sets,
        train,
        2,
        png,
        PROVENANCE,
    )
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 800

    wrong = {**identity, "model_sha256": "other"}
    save_features(patch_paths[1], patch_feats[1], "float32", wrong)
    with pytest.raises(ValueError, match="model_sha256"):
        jobs.patch_scores_job(
            "trak",
            ["full_0", "full_1"],
            train_paths,
            patch_paths,
            tmp_path / "lambda.json",
            targets,
            sets,
            figures,
            out,
            PROVENANCE,
        )


def test_influencer_tiles_show_the_training_caption_where_captioned(tmp_path):
    images = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    labels = np.array([0, 1, 1])
    path = tmp_path / "train.npz"
    captions = ["a handwritten digit 0", "the number 1", "a group of people flying kites on a "
                "sunny beach next to the ocean"]  # fmt: skip
    np.savez(path, images=images, labels=labels, class_names=np.array(["0", "1"]),
             captions=np.array([[c, ""] for c in captions]))  # fmt: skip
    train = jobs.load_training_images(path)
    assert train.caption(1) == "#1\nthe number 1"
    long = train.caption(2).split("\n")
    assert long[0] == "#2" and len(long) == 3 and long[2].endswith(" ...")
    assert all(len(line) <= 22 for line in long)
    np.savez(path, images=images, labels=labels, class_names=np.array(["0", "1"]))
    assert jobs.load_training_images(path).caption(1) == "1 #1"  # uncaptioned: the class
