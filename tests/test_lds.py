"""LDS evaluation: Spearman/bootstrap numerics, lambda selection, baselines, subset ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from tiny_models import TINY_UNET

from stepattr.core.diffusion import Schedule, build_unet, eps_model, save_model, unet_kwargs
from stepattr.core.io import save_csv, save_json, save_npy, save_npz
from stepattr.core.output_functions import (
    diffusion_losses,
    output_value,
    step_losses,
    target_draws,
    train_draws,
)
from stepattr.core.seeds import derive_seed
from stepattr.lds import jobs as lds_jobs
from stepattr.lds.baselines import (
    cosine_scores,
    embedding_scores,
    graddot_scores,
    pixel_scores,
    random_scores,
)
from stepattr.lds.ground_truth import (
    FRESH_NOISE,
    GROUND_TRUTHS,
    load_subset_outputs,
    subset_model_outputs,
)
from stepattr.lds.jobs import (
    baseline_scores,
    choose_lambda,
    default_choice,
    lds_frames,
    select_lambda_job,
)
from stepattr.lds.metric import (
    bootstrap_lds,
    bootstrap_lds_difference,
    lds_per_target,
    predicted_outputs,
    select_lambda,
    spearman_rows,
)
from stepattr.lds.tables import (
    dtrak_lds_rows,
    ground_truth_comparison,
    lds_markdown,
    step_lds_rows,
    tuning_curves,
)
from stepattr.targets.sets import load_target_sets
from stepattr.trak.scores import trak_scores
from stepattr.trak.storage import info_path, load_info, save_features


def linear_datamodel(rng, m, g, n, n_subsets, noise):
    """True influences tau (m, g, n), masks (M, n), and losses = -(masks @ tau) + noise."""
    tau = rng.standard_normal((m, g, n))
    masks = rng.random((n_subsets, n)) < 0.5
    losses = -(tau @ masks.T) + noise * rng.standard_normal((m, g, n_subsets))
    return tau, masks, losses


# ----------------------------------------------------------------------------- LDS numerics


def test_spearman_rows_matches_scipy_with_ties_and_nan_for_constant():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(30, 12)).astype(float)  # many ties
    b = rng.standard_normal((30, 12))
    a[3] = 1.0  # constant row: undefined
    rho = spearman_rows(a, b)
    for i in range(30):
        expected = np.nan if i == 3 else spearmanr(a[i], b[i]).statistic
        np.testing.assert_allclose(rho[i], expected, atol=1e-12, equal_nan=True)


def test_predicted_outputs_is_subset_sum():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((3, 2, 7))
    masks = rng.random((5, 7)) < 0.5
    pred = predicted_outputs(masks, scores)
    for i in range(3):
        for g in range(2):
            for j in range(5):
                assert pred[i, g, j] == pytest.approx(scores[i, g][masks[j]].sum())
    with pytest.raises(ValueError, match="boolean"):
        predicted_outputs(masks.astype(int), scores)


def test_linear_datamodel_gives_lds_near_one():
    rng = np.random.default_rng(2)
    tau, masks, losses = linear_datamodel(rng, m=20, g=3, n=200, n_subsets=40, noise=0.5)
    rho = lds_per_target(tau, masks, losses)
    assert rho.shape == (20, 3)
    predicted = predicted_outputs(masks, tau).reshape(60, 40)
    res = bootstrap_lds(predicted, -losses.reshape(60, 40), n_boot=300, seed=0)
    assert res.lds == pytest.approx(rho.mean()) and res.lds > 0.95 and res.ci_low > 0.9
    # The sign convention: negated scores predict the opposite.
    assert bootstrap_lds(-predicted, -losses.reshape(60, 40), 100, 0).lds < -0.95


def test_random_scores_give_lds_near_zero():
    rng = np.random.default_rng(3)
    tau, masks, losses = linear_datamodel(rng, m=300, g=1, n=100, n_subsets=40, noise=0.5)
    predicted = predicted_outputs(masks, rng.standard_normal(tau.shape))[:, 0]
    res = bootstrap_lds(predicted, -losses[:, 0], n_boot=300, seed=0)
    assert abs(res.lds) < 0.06
    assert res.ci_low < 0 < res.ci_high


def test_undefined_correlations_are_excluded_counted_and_warned():
    rng = np.random.default_rng(1)
    predicted = rng.standard_normal((4, 6))
    actual = predicted + 0.1 * rng.standard_normal((4, 6))
    actual[1] = 3.0  # constant ground truth: undefined
    predicted[3] = 0.0  # constant prediction: undefined
    with pytest.warns(RuntimeWarning, match="2 of 4 targets"):
        res = bootstrap_lds(predicted, actual, n_boot=100, seed=0)
    assert (res.n_targets, res.n_excluded) == (2, 2)
    assert res.lds == pytest.approx(spearman_rows(predicted[[0, 2]], actual[[0, 2]]).mean())


def test_bootstrap_ci_is_seeded():
    rng = np.random.default_rng(4)
    predicted, actual = rng.standard_normal((2, 25, 10))
    assert bootstrap_lds(predicted, actual, 200, seed=7) == bootstrap_lds(
        predicted, actual, 200, seed=7
    )


def shared_subset_datamodel(rng, m, n_subsets, n=40):
    """Targets whose ground truth shares a subset-level effect: every target is scored on the
    same subsets, and the models of some subsets are better for every target alike."""
    tau = rng.standard_normal((m, n))
    common = rng.standard_normal(n)  # examples that help every target alike
    masks = rng.random((n_subsets, n)) < 0.5
    noise = rng.uniform(1.0, 6.0, size=(m, 1))
    shared = 6.0 * masks @ common / np.sqrt(n)  # what the attribution does not know
    actual = tau @ masks.T + shared + noise * rng.standard_normal((m, n_subsets))
    return tau @ masks.T, actual


def test_bootstrap_ci_covers_the_true_lds_at_its_nominal_rate():
    """Each replication draws new subsets and new targets (as a rerun of the workflow would);
    the true LDS is the population mean over both, from a large simulation. The subset-level
    effect makes per-target correlations move together, which a CI over targets alone misses."""
    rng = np.random.default_rng(5)
    truth = np.mean(
        [np.nanmean(spearman_rows(*shared_subset_datamodel(rng, 200, 12))) for _ in range(400)]
    )
    covered, replications = 0, 150
    for rep in range(replications):
        predicted, actual = shared_subset_datamodel(rng, 30, 12)
        res = bootstrap_lds(predicted, actual, n_boot=300, seed=rep)
        covered += res.ci_low <= truth <= res.ci_high
    assert 0.87 <= covered / replications <= 1.0


# ----------------------------------------------------------------------------- lambda


def test_select_lambda_picks_the_lambda_that_predicts_held_out_subsets():
    rng = np.random.default_rng(6)
    tau, masks, losses = linear_datamodel(rng, m=10, g=2, n=80, n_subsets=16, noise=1.0)
    noise = rng.standard_normal(tau.shape)
    # The further lambda is from 1, the more noise its scores carry.
    weight = {0.01: 4.0, 0.1: 1.0, 1.0: 0.0, 10.0: 1.0, 100.0: 4.0}
    chosen, per_lambda = select_lambda(
        list(weight), lambda lam: tau + weight[lam] * noise, masks, losses
    )
    assert chosen == 1.0
    assert per_lambda[1.0] == max(per_lambda.values())
    assert per_lambda[1.0] > per_lambda[0.1] > per_lambda[0.01]


def test_select_lambda_breaks_ties_toward_the_smaller_lambda():
    rng = np.random.default_rng(7)
    tau, masks, losses = linear_datamodel(rng, m=5, g=2, n=40, n_subsets=10, noise=1.0)
    chosen, per_lambda = select_lambda([10.0, 0.1, 1.0], lambda lam: tau, masks, losses)
    assert chosen == 0.1
    assert len(set(per_lambda.values())) == 1


# ----------------------------------------------------------------------------- baselines


def test_random_scores_shape_dtype_and_seed():
    a = random_scores((3, 2, 5), seed=1)
    assert a.shape == (3, 2, 5) and a.dtype == np.float32
    np.testing.assert_array_equal(a, random_scores((3, 2, 5), seed=1))
    assert not np.array_equal(a, random_scores((3, 2, 5), seed=2))


def test_pixel_scores_match_a_brute_force_loop():
    rng = np.random.default_rng(8)
    x0hat = rng.uniform(-1, 1, size=(3, 2, 1, 4, 4)).astype(np.float32)
    train = rng.uniform(-1, 1, size=(6, 1, 4, 4)).astype(np.float32)
    scores = pixel_scores(x0hat, train)
    assert scores.shape == (3, 2, 6) and scores.dtype == np.float32
    for i in range(3):
        for g in range(2):
            for j in range(6):
                a, b = x0hat[i, g].ravel(), train[j].ravel()
                cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                assert scores[i, g, j] == pytest.approx(cos, abs=1e-6)
    # An exact copy of a training image is its most similar example.
    x0hat[0, 1] = train[4]
    assert pixel_scores(x0hat, train)[0, 1].argmax() == 4


def test_embedding_scores_are_cosines_of_embeddings():
    rng = np.random.default_rng(9)
    x0hat = rng.uniform(-1, 1, size=(2, 3, 1, 4, 4)).astype(np.float32)
    train = rng.uniform(-1, 1, size=(5, 1, 4, 4)).astype(np.float32)
    proj = rng.standard_normal((16, 6))

    def embed(images):
        return images.reshape(len(images), -1) @ proj

    scores = embedding_scores(embed, x0hat, train)
    assert scores.shape == (2, 3, 5)
    expected = cosine_scores(embed(x0hat.reshape(6, 1, 4, 4)).reshape(2, 3, 6), embed(train))
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_graddot_is_the_model_average_of_feature_dot_products():
    rng = np.random.default_rng(10)
    trains = [rng.standard_normal((7, 4)) for _ in range(2)]
    targets = [rng.standard_normal((3, 2, 4)) for _ in range(2)]
    scores = graddot_scores(trains, targets)
    assert scores.shape == (3, 2, 7)
    i, g, j = 2, 1, 5
    expected = np.mean([targets[c][i, g] @ trains[c][j] for c in range(2)])
    assert scores[i, g, j] == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- ground truth


def tiny_eps(seed):
    torch.manual_seed(seed)
    return eps_model(build_unet(TINY_UNET, image_size=8, channels=1).eval())


def recording(eps_fn, inputs):
    def wrapped(x, t):
        inputs.append((x.clone(), t.clone()))
        return eps_fn(x, t)

    return wrapped


def test_subset_outputs_use_common_noises_and_equal_output_value():
    ac = Schedule().alphas_cumprod
    gen = torch.Generator().manual_seed(0)
    x0hat = torch.rand((3, 2, 1, 8, 8), generator=gen) * 2 - 1
    ids, grid = np.array([5, 9, 11]), [700, 100]
    seen_a, seen_b = [], []
    eps_a, eps_b = tiny_eps(0), tiny_eps(1)
    f_a = step_losses(recording(eps_a, seen_a), x0hat, ids, grid, 4, 3, ac, batch_size=8)
    f_b = step_losses(recording(eps_b, seen_b), x0hat, ids, grid, 4, 3, ac, batch_size=8)
    assert f_a.shape == (3, 2) and not np.allclose(f_a, f_b)
    # Same noised inputs for both models: the differences are the models', not the noise's.
    assert len(seen_a) == len(seen_b)
    for (xa, ta), (xb, tb) in zip(seen_a, seen_b, strict=True):
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        torch.testing.assert_close(ta, tb, rtol=0, atol=0)
    # Each value is the output function with the draws of outputs.target_draws.
    with torch.no_grad():
        for g, step in enumerate(grid):
            ts, ns = target_draws(3, ids.tolist(), step, 4, (1, 8, 8))
            direct = output_value(eps_a, "loss", x0hat[:, g], ts, ns, ac)
            np.testing.assert_allclose(f_a[:, g], direct.double().numpy(), rtol=1e-5)


def test_diffusion_losses_average_over_seeded_uniform_timesteps():
    ac = Schedule().alphas_cumprod
    x0 = torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(1)) * 2 - 1
    ids = np.array([0, 4])
    eps = tiny_eps(2)
    values = diffusion_losses(eps, x0, ids, draws=6, seed=11, alphas_cumprod=ac, batch_size=4)
    ts, ns = train_draws(11, ids.tolist(), 6, (1, 8, 8), 1000)
    with torch.no_grad():
        direct = output_value(eps, "loss", x0, ts, ns, ac) / 6
    np.testing.assert_allclose(values, direct.double().numpy(), rtol=1e-5)


def test_load_subset_outputs_averages_seeds_of_a_subset(tmp_path):
    rng = np.random.default_rng(11)
    arrays = {
        mid: (rng.standard_normal((4, 3)), rng.standard_normal(4))
        for mid in ["subset_1_s0", "subset_0_s0", "subset_1_s1", "subset_0_s1"]
    }
    paths = []
    for mid, (f, d) in arrays.items():
        save_npz(tmp_path / f"{mid}.npz", f=f, dtrak=d)
        paths.append(tmp_path / f"{mid}.npz")
    rows, f, dtrak = load_subset_outputs(paths, list(arrays))
    assert rows.tolist() == [0, 1] and f.shape == (4, 3, 2) and dtrak.shape == (4, 2)
    # exact: the mean of the seeds' own arrays, bit for bit
    assert np.array_equal(f[..., 1], (arrays["subset_1_s0"][0] + arrays["subset_1_s1"][0]) / 2)
    assert np.array_equal(dtrak[:, 0], (arrays["subset_0_s0"][1] + arrays["subset_0_s1"][1]) / 2)
    with pytest.raises(ValueError, match="not a subset model id"):
        load_subset_outputs(paths[:1], ["full_0"])
    with pytest.raises(ValueError, match="every subset needs the same seeds"):
        load_subset_outputs(paths[:3], list(arrays)[:3])
    with pytest.raises(ValueError, match=r"has no f_fresh .*--forcerun eval_subset_outputs"):
        load_subset_outputs(paths, list(arrays), ground_truth="f_fresh")
    with pytest.raises(ValueError, match="not one of"):
        load_subset_outputs(paths, list(arrays), ground_truth="g")


def test_subset_outputs_score_the_featurizer_noises_and_fresh_ones(tmp_path):
    """``f`` is f_t under the featurizer's own R noises (attribution.seed); ``f_fresh`` the
    same function under the FRESH_NOISE stream of lds.seed, apart from them even where the
    two seeds are equal; both are what step_losses gives with those seeds."""
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET, 8, 1)
    save_model(tmp_path / "m", unet, unet_kwargs(TINY_UNET, 8, 1), Schedule())
    rng = np.random.default_rng(5)
    m, grid = 3, np.array([900, 400, 0])
    x0hat = rng.uniform(-1, 1, size=(m, 3, 1, 8, 8)).astype(np.float32)
    save_npz(
        tmp_path / "generated.npz",
        x_t=x0hat, x0hat=x0hat, x0=x0hat[:, -1], grid=grid, target_id=np.arange(m) + 7,
        label=np.full(m, -1), source_index=np.full(m, -1),
    )  # fmt: skip
    targets = load_target_sets([tmp_path / "generated.npz"], ["generated"])
    cpu = torch.device("cpu")
    out = subset_model_outputs(tmp_path / "m", targets, 4, 0, 5, 0, 64, cpu)
    assert set(GROUND_TRUTHS) <= set(out) and out["f_fresh"].shape == out["f"].shape == (m, 3)
    eps, ac = eps_model(unet.eval()), Schedule().alphas_cumprod
    args = (torch.from_numpy(x0hat), targets.target_id, grid, 4)
    np.testing.assert_allclose(out["f"], step_losses(eps, *args, 0, ac), rtol=1e-5)
    fresh = step_losses(eps, *args, derive_seed(FRESH_NOISE, 0), ac)
    np.testing.assert_allclose(out["f_fresh"], fresh, rtol=1e-5)
    assert np.abs(out["f_fresh"] - out["f"]).max() > 1e-3  # other noises, other values
    again = subset_model_outputs(tmp_path / "m", targets, 4, 0, 5, 0, 64, cpu)
    assert np.array_equal(again["f_fresh"], out["f_fresh"])  # the same draws for every model


def test_load_target_sets_concatenates_in_order_and_rejects_duplicate_ids(tmp_path):
    def write(name, ids, grid=(900, 0)):
        m = len(ids)
        save_npz(
            tmp_path / f"{name}.npz",
            x_t=np.zeros((m, 2, 1, 4, 4), np.float32),
            x0hat=np.full((m, 2, 1, 4, 4), len(name), np.float32),
            x0=np.zeros((m, 1, 4, 4), np.float32),
            grid=np.array(grid),
            target_id=np.array(ids),
            label=np.full(m, -1),
            source_index=np.full(m, -1),
        )
        return tmp_path / f"{name}.npz"

    sets = load_target_sets(
        [write("generated", [0, 1]), write("validation", [2])], ["generated", "validation"]
    )
    assert sets.x0hat.shape == (3, 2, 1, 4, 4)
    assert sets.index()["target_set"].tolist() == ["generated", "generated", "validation"]
    with pytest.raises(ValueError, match="not unique"):
        load_target_sets(
            [write("generated", [0, 1]), write("validation", [1])], ["generated", "validation"]
        )
    with pytest.raises(ValueError, match="grid"):
        load_target_sets(
            [write("generated", [0]), write("validation", [1], (800, 0))],
            ["generated", "validation"],
        )


# ----------------------------------------------------------------------------- tables


def test_tables_have_one_cell_per_method_and_step():
    rng = np.random.default_rng(12)
    tau, masks, losses = linear_datamodel(rng, m=6, g=2, n=30, n_subsets=8, noise=0.5)
    sets = np.array(["generated"] * 4 + ["validation"] * 2)
    rows = []
    for method, scores in [("trak", tau), ("random", rng.standard_normal(tau.shape))]:
        rows += step_lds_rows(method, scores, masks, losses, [900, 0], sets, n_boot=50, seed=0)
    frame = pd.DataFrame(rows)
    assert len(frame) == 2 * 3 * 2  # methods x (all, generated, validation) x steps
    text = lds_markdown(frame, "LDS", ["config: x"], {"random": "random (seeded)"})
    assert "| method | t=900 | t=0 |" in text and "random (seeded)" in text
    whole = tau.mean(axis=1)
    dtrak = pd.DataFrame(dtrak_lds_rows("trak", whole, masks, losses.mean(axis=1), sets, 50, 0))
    assert "step" not in dtrak and len(dtrak) == 3
    assert "| method | all | generated | validation |" in lds_markdown(dtrak, "D", [], {})


def test_tuning_curves_show_every_held_out_value_and_bold_the_choice():
    def record(key, curve, whole_curve):
        def choice(c):
            best = max(c, key=c.get)
            return {key: best, "heldout_lds": [{key: v, "lds": x} for v, x in c.items()]}

        return {**choice(curve), "heldout_rows": [4, 5, 6], "whole_loss": choice(whole_curve)}

    lines = tuning_curves({
        "trak": ("lambda", record("lambda", {0.1: 0.02, 10.0: 0.05}, {0.1: 0.3, 10.0: -0.1})),
        "dtrak": ("lambda", record("lambda", {0.1: 0.01, 1.0: 0.04}, {0.1: 0.2, 1.0: 0.1})),
        "kfac": ("damping", record("damping", {1e-6: 0.1, 1e-3: 0.0}, {1e-6: 0.0, 1e-3: 0.2})),
    })  # fmt: skip
    text = "\n".join(lines)
    assert "| method | protocol | 0.1 | 1 | 10 |" in text  # the union of the lambda grids
    assert "| trak | per step | +0.020 |  | **+0.050** |" in text  # 1 not on trak's grid
    assert "| trak | whole loss | **+0.300** |  | -0.100 |" in text
    assert "| kfac | whole loss | +0.000 | **+0.200** |" in text
    assert text.count("3 held-out subsets") == 2  # one table per tuned quantity
    assert tuning_curves({}) == []


def test_choose_lambda_recovers_each_protocols_lambda_that_generated_its_outputs():
    """Per-step outputs made at lambda 3 and whole losses at lambda 300: each protocol's
    choice finds its own."""
    rng = np.random.default_rng(13)
    n, k, m, g = 40, 6, 5, 2
    train = [rng.standard_normal((n, k)) for _ in range(2)]
    target = [rng.standard_normal((m, g, k)) for _ in range(2)]
    whole_target = [rng.standard_normal((m, 1, k)) for _ in range(2)]
    masks = rng.random((12, n)) < 0.5
    losses = -(trak_scores(train, target, 3.0).astype(np.float64) @ masks.T)
    whole = -(trak_scores(train, whole_target, 300.0)[:, 0].astype(np.float64) @ masks.T)
    lams = [0.01, 3.0, 300.0]
    record = choose_lambda(lams, train, target, whole_target, (masks, losses, whole, range(12)))
    assert record["lambda"] == 3.0 and record["whole_loss"]["lambda"] == 300.0
    assert [r["lambda"] for r in record["heldout_lds"]] == lams
    assert record["heldout_lds"][1]["lds"] == pytest.approx(1.0)
    assert record["whole_loss"]["heldout_lds"][2]["lds"] == pytest.approx(1.0)
    assert record["whole_loss"]["heldout_lds"][1]["lds"] < 1.0
    default = default_choice("lambda", "attribution.lambdas", [0.5, 1.0])
    assert default["lambda"] == default["whole_loss"]["lambda"] == 0.5


def test_baselines_to_tables_through_files(tmp_path):
    """baseline_scores -> scores dir -> lds_frames, as the rules chain them."""
    rng = np.random.default_rng(14)
    n, m, grid = 30, 4, np.array([900, 0])
    images = rng.integers(0, 256, size=(n, 1, 4, 4), dtype=np.uint8)
    save_npz(
        tmp_path / "train.npz",
        images=images,
        labels=np.zeros(n, np.int64),
        class_names=np.array(["a"]),
    )
    x0hat = rng.uniform(-1, 1, size=(m, 2, 1, 4, 4)).astype(np.float32)
    save_npz(
        tmp_path / "generated.npz",
        x_t=x0hat,
        x0hat=x0hat,
        x0=x0hat[:, 1],
        grid=grid,
        target_id=np.arange(m),
        label=np.full(m, -1),
        source_index=np.full(m, -1),
    )
    targets = load_target_sets([tmp_path / "generated.npz"], ["generated"])
    dirs = {}
    for name in ("random", "pixel"):
        scores, whole_loss = baseline_scores(name, targets, tmp_path / "train.npz", seed=0)
        assert scores.shape == (m, 2, n) and whole_loss.shape == (m, n)
        dirs[name] = tmp_path / name
        save_npy(dirs[name] / "scores.npy", scores)
        save_npy(dirs[name] / "whole_loss.npy", whole_loss)
        save_csv(dirs[name] / "index.csv", targets.index())
        save_json(dirs[name] / "meta.json", {"method": name, "grid": grid.tolist()})
    masks = rng.random((6, n)) < 0.5
    pixel = np.load(dirs["pixel"] / "scores.npy")
    f = -(pixel.astype(np.float64) @ masks.T)  # ground truth that pixel similarity predicts
    # the whole loss is the final image's (x0 = x0hat at the last step): pixel similarity of
    # x_0 predicts it exactly, the step-averaged scores would not
    dtrak = f[:, 1]
    f_fresh = f + rng.standard_normal(f.shape) * f.std()  # the same f_t under other noises
    steps, whole, _, fresh, labels = lds_frames(
        dirs, targets, masks, f, dtrak, 100, 0, 0.95, f_fresh=f_fresh
    )
    assert set(labels) == {"random", "pixel"}
    assert (steps[steps["method"] == "pixel"]["lds"] == 1.0).all()
    assert fresh[["method", "target_set", "step"]].equals(steps[["method", "target_set", "step"]])
    pixel_fresh = fresh[fresh["method"] == "pixel"]["lds"]
    assert (pixel_fresh < 1.0).all() and (pixel_fresh > 0.0).all()
    table = "\n".join(ground_truth_comparison(steps, fresh, labels))
    assert "| pixel | +1.000 | 2 of 2 |" in table and "## Against fresh noise" in table
    assert ground_truth_comparison(steps, fresh.iloc[:0], labels) == []
    assert len(whole) == 2 and whole.loc[whole["method"] == "pixel", "lds"].item() == 1.0
    averaged = -(pixel.mean(axis=1).astype(np.float64) @ masks.T)
    assert not np.allclose(averaged, dtrak)
    with pytest.raises(ValueError, match="not the current targets"):
        other = dataclasses.replace(targets, target_id=targets.target_id + 100)
        lds_frames(dirs, other, masks, f, dtrak, 10, 0, 0.95)


def write_model_features(root, model_id, n, m, k, featurizer, sha, rng):
    """One model's train, generated-target and whole-loss feature files, as the featurize
    rules write them."""
    info = {"featurizer": featurizer, "model_sha256": sha}
    train = root / model_id / "train.npy"
    target = root / model_id / "generated.npy"
    whole = root / model_id / "generated_whole_loss.npy"
    save_features(train, rng.standard_normal((n, k)).astype(np.float32), "float32", info)
    save_features(target, rng.standard_normal((m, 2, k)).astype(np.float32), "float32", info)
    save_features(whole, rng.standard_normal((m, 1, k)).astype(np.float32), "float32", info)
    return train, target, whole


FEATURIZER = {"output_function": "loss", "projector": "rademacher", "dim": 8, "seed": 1}
MISMATCHES = [
    pytest.param({"model_sha256": "other-weights"}, "model_sha256", id="other-weights"),
    pytest.param(
        {"featurizer": {**FEATURIZER, "projector": "normal"}}, "featurizer", id="projector"
    ),
]


@pytest.fixture
def two_models(tmp_path):
    """Compatible features of two models: train paths, model-major target and whole-loss
    paths."""
    rng = np.random.default_rng(21)
    files = [
        write_model_features(tmp_path, f"full_{c}", 30, 4, 8, FEATURIZER, f"w{c}", rng)
        for c in range(2)
    ]
    return tuple(list(paths) for paths in zip(*files, strict=True))


def mismatch(path, change):
    """Rewrite the .json record of ``path`` as another featurizer or other weights made it."""
    record = load_info(path)
    save_json(info_path(path), {**record, **change})


@pytest.mark.parametrize(("change", "key"), MISMATCHES)
def test_select_lambda_refuses_features_of_other_weights_or_projector(two_models, change, key):
    train, target, whole = two_models
    mismatch(target[1], change)
    with pytest.raises(ValueError, match=key):
        select_lambda_job([1.0], (train, target, whole), ("masks.npy", []), ["subset_0_s0"])


@pytest.mark.parametrize(("change", "key"), MISMATCHES)
def test_graddot_refuses_features_of_other_weights_or_projector(tmp_path, two_models, change, key):
    mismatch(two_models[0][0], change)
    targets = graddot_targets(tmp_path)
    with pytest.raises(ValueError, match=key):
        baseline_scores("graddot", targets, tmp_path / "train.npz", 0, feature_paths=two_models)


def graddot_targets(tmp_path):
    """4 generated targets at 2 steps and a 30-image train split (the fixture's sizes)."""
    rng = np.random.default_rng(3)
    save_npz(
        tmp_path / "train.npz",
        images=rng.integers(0, 256, size=(30, 1, 4, 4), dtype=np.uint8),
        labels=np.zeros(30, np.int64),
        class_names=np.array(["a"]),
    )
    x0hat = rng.uniform(-1, 1, size=(4, 2, 1, 4, 4)).astype(np.float32)
    save_npz(
        tmp_path / "generated.npz",
        x_t=x0hat, x0hat=x0hat, x0=x0hat[:, 0], grid=np.array([900, 0]),
        target_id=np.arange(4), label=np.full(4, -1), source_index=np.full(4, -1),
    )  # fmt: skip
    return load_target_sets([tmp_path / "generated.npz"], ["generated"])


def test_select_lambda_and_graddot_read_train_features_memory_mapped(
    tmp_path, two_models, monkeypatch
):
    """At cifar10 scale the train features are ~41 GB: both jobs must map them, not load them."""
    seen = {}

    def choose(lambdas, train_features, *args):
        seen["select_lambda"] = train_features
        return {"lambda": lambdas[0]}

    def graddot(train_features, target_features):
        seen.setdefault("graddot", []).append(train_features)
        return np.zeros((*target_features[0].shape[:2], 30), np.float32)

    monkeypatch.setattr(lds_jobs, "choose_lambda", choose)
    monkeypatch.setattr(
        lds_jobs, "load_subset_outputs", lambda paths, models: ([0], np.zeros((4, 2, 1)), None)
    )
    save_npy(tmp_path / "masks.npy", np.ones((1, 30), bool))
    select_lambda_job([1.0], two_models, (tmp_path / "masks.npy", []), ["subset_0_s0"])
    monkeypatch.setattr(lds_jobs.baselines, "graddot_scores", graddot)
    targets = graddot_targets(tmp_path)
    baseline_scores("graddot", targets, tmp_path / "train.npz", 0, feature_paths=two_models)
    assert len(seen["graddot"]) == 2  # per step, and the whole loss
    jobs = [("select_lambda", seen["select_lambda"])] + [("graddot", f) for f in seen["graddot"]]
    for job, features in jobs:
        assert len(features) == 2, job
        assert all(isinstance(phi, np.memmap) for phi in features), job
    assert set(seen) == {"select_lambda", "graddot"}


def test_paired_difference_cancels_the_noise_both_methods_share():
    """Two methods that differ by a small, consistent margin: the paired CI of the difference
    is far narrower than either method's own CI, excludes 0, and its point is the difference
    of the LDS; a method against itself gives exactly 0."""
    rng = np.random.default_rng(4)
    m, subsets = 20, 16
    actual = rng.normal(size=(m, subsets))
    shared = rng.normal(size=(m, subsets))
    better = actual + 1.2 * shared
    worse = actual + 1.5 * shared
    diff = bootstrap_lds_difference(better, worse, actual, 400, 0)
    own = bootstrap_lds(better, actual, 400, 0)
    rho = lambda p: spearman_rows(p, actual).mean()  # noqa: E731
    assert diff.difference == pytest.approx(rho(better) - rho(worse))
    assert diff.ci_low > 0
    assert diff.ci_high - diff.ci_low < 0.5 * (own.ci_high - own.ci_low)
    same = bootstrap_lds_difference(better, better, actual, 50, 0)
    assert (same.difference, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_paired_difference_ci_by_one_axis_holds_the_other_fixed():
    """resample=[axis]: with every target a copy of one, resampling only the targets cannot
    move the difference (zero width) while resampling only the subsets does; both axes is the
    default; an unknown axis is refused by name."""
    rng = np.random.default_rng(5)
    subsets = 16
    actual = np.repeat(rng.normal(size=(1, subsets)), 8, axis=0)
    shared = np.repeat(rng.normal(size=(1, subsets)), 8, axis=0)
    a, b = actual + shared, actual + 2 * shared
    by_targets = bootstrap_lds_difference(a, b, actual, 200, 0, resample=["targets"])
    by_subsets = bootstrap_lds_difference(a, b, actual, 200, 0, resample=["subsets"])
    assert by_targets.ci_low == pytest.approx(by_targets.ci_high)
    assert by_targets.ci_low == pytest.approx(by_targets.difference)
    assert by_subsets.ci_high - by_subsets.ci_low > 0.05
    both = bootstrap_lds_difference(a, b, actual, 200, 0, resample=["subsets", "targets"])
    assert both == bootstrap_lds_difference(a, b, actual, 200, 0)
    with pytest.raises(ValueError, match="seeds"):
        bootstrap_lds_difference(a, b, actual, 10, 0, resample=["seeds"])
