"""The retraining ceiling: one seed's outputs against the other seeds' mean, across subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from stepattr.core.io import save_npz
from stepattr.lds.ground_truth import load_subset_outputs, load_subset_outputs_by_seed
from stepattr.lds.metric import bootstrap_ceiling, seed_agreement
from stepattr.lds.tables import CEILING, ceiling_rows, lds_markdown, noise_bound, step_lds_rows


def seeded_outputs(rng, m, n_subsets, s, noise):
    """Outputs (m, M, s) = a per-subset signal of unit variance + seed noise of sd ``noise``."""
    signal = rng.standard_normal((m, n_subsets, 1))
    return signal + noise * rng.standard_normal((m, n_subsets, s))


def test_seed_agreement_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    outputs = seeded_outputs(rng, m=5, n_subsets=9, s=3, noise=0.7)
    outputs[0, :4, 1] = outputs[0, 0, 1]  # ties
    expected = [
        np.mean(
            [
                spearmanr(out[:, k], np.delete(out, k, axis=1).mean(axis=1)).statistic
                for k in range(out.shape[1])
            ]
        )
        for out in outputs
    ]
    np.testing.assert_allclose(seed_agreement(outputs), expected, rtol=1e-12)


@pytest.mark.parametrize("s, noise", [(2, 0.5), (2, 1.5), (4, 1.0)])
def test_ceiling_recovers_the_known_reliability(s, noise):
    """Signal variance 1, seed noise variance noise^2: one seed against the mean of s - 1
    others has Pearson correlation sqrt(r_1 r_{s-1}), r_k = 1 / (1 + noise^2 / k); for
    Gaussians Spearman's is (6 / pi) asin(rho / 2)."""
    rng = np.random.default_rng(1)
    outputs = seeded_outputs(rng, m=40, n_subsets=400, s=s, noise=noise)
    r1, rest = 1 / (1 + noise**2), 1 / (1 + noise**2 / (s - 1))
    expected = 6 / np.pi * np.arcsin(np.sqrt(r1 * rest) / 2)
    res = bootstrap_ceiling(outputs, n_boot=100, seed=0)
    assert res.lds == pytest.approx(expected, abs=0.02)
    assert res.ci_low < expected < res.ci_high


def test_ceiling_is_one_without_seed_noise_and_needs_two_seeds():
    rng = np.random.default_rng(2)
    outputs = seeded_outputs(rng, m=3, n_subsets=8, s=2, noise=0.0)
    assert seed_agreement(outputs) == pytest.approx(np.ones(3))
    with pytest.raises(ValueError, match=">= 2 seeds"):
        seed_agreement(outputs[..., :1])


def test_ceiling_rows_and_markdown_share():
    rng = np.random.default_rng(3)
    m, g, n_subsets, s = 6, 2, 10, 2
    f = rng.standard_normal((m, g, n_subsets, 1)) + 0.3 * rng.standard_normal((m, g, n_subsets, s))
    dtrak = f[:, 0]
    sets = np.array(["generated"] * 4 + ["validation"] * 2)
    steps, whole = ceiling_rows(f, dtrak, [900, 0], sets, n_boot=20, seed=0)
    assert len(steps) == 3 * 2 and len(whole) == 3
    assert {r["method"] for r in steps + whole} == {CEILING}
    assert ceiling_rows(f[..., :1], dtrak[..., :1], [900, 0], sets, 20, 0) == ([], [])
    assert ceiling_rows(f, None, [900, 0], sets, n_boot=20, seed=0) == (steps, [])
    masks = rng.random((n_subsets, 30)) < 0.5
    scores = rng.standard_normal((m, g, 30))
    rows = steps + step_lds_rows("trak", scores, masks, f.mean(-1), [900, 0], sets, 20, 0)
    text = lds_markdown(pd.DataFrame(rows), "LDS", [], {CEILING: "retraining ceiling"}, seeds=2)
    assert "| retraining ceiling |" in text and "## Against the noise bound" in text
    assert "| trak |" in text.split("## Against the noise bound")[1]
    agreeing = [{**r, "lds": -0.1} if r["method"] == CEILING else r for r in rows]
    text = lds_markdown(pd.DataFrame(agreeing), "LDS", [], {}, seeds=2)
    assert "The seeds do not agree on average" in text and "| trak |" not in text.split("bound")[1]


def test_noise_bound_is_what_a_perfect_predictor_reaches_against_the_seed_mean():
    """Outputs y_s = mu + noise_s: r (one seed against another) is the reliability; the true
    expected output mu correlates with the mean of s seeds at noise_bound(r, s), above r."""
    rng = np.random.default_rng(9)
    n, s, noise = 200_000, 2, 1.5
    mu = rng.standard_normal(n)
    y = mu[:, None] + noise * rng.standard_normal((n, s))
    r = np.corrcoef(y[:, 0], y[:, 1])[0, 1]
    assert r == pytest.approx(1 / (1 + noise**2), abs=0.01)
    reached = np.corrcoef(mu, y.mean(axis=1))[0, 1]
    assert noise_bound(r, s) == pytest.approx(reached, abs=0.01) and reached > r + 0.1
    assert noise_bound(r, 1) == pytest.approx(np.sqrt(r))


def test_outputs_by_seed_keep_each_seed_and_their_mean_is_the_ground_truth(tmp_path):
    rng = np.random.default_rng(4)
    ids = [f"subset_{j}_s{k}" for j in (2, 0) for k in (1, 0, 2)]
    arrays = {mid: (rng.standard_normal((4, 3)), rng.standard_normal(4)) for mid in ids}
    paths = []
    for mid, (f, d) in arrays.items():
        save_npz(tmp_path / f"{mid}.npz", f=f, dtrak=d)
        paths.append(tmp_path / f"{mid}.npz")
    rows, f, dtrak = load_subset_outputs_by_seed(paths, ids)
    assert rows.tolist() == [0, 2] and f.shape == (4, 3, 2, 3) and dtrak.shape == (4, 2, 3)
    assert np.array_equal(f[:, :, 1, 2], arrays["subset_2_s2"][0])
    assert np.array_equal(dtrak[:, 0, 1], arrays["subset_0_s1"][1])
    _, f_mean, d_mean = load_subset_outputs(paths, ids)
    assert np.array_equal(f_mean, f.mean(axis=-1)) and np.array_equal(d_mean, dtrak.mean(-1))


def test_regime_row_reads_a_screen_run_back(tmp_path):
    """stepattr.lds.regimes: recipe from the files, the ceiling of the outputs, the cost."""
    from stepattr.core.io import save_json
    from stepattr.lds.regimes import markdown, regime_row, screen_targets

    rng = np.random.default_rng(5)
    run = tmp_path / "two_class"
    outputs = seeded_outputs(rng, m=8, n_subsets=6, s=2, noise=0.0)  # no seed noise: ceiling 1
    for j in range(6):
        for k in range(2):
            f = np.repeat(outputs[:, j, k, None], 3, axis=1)
            path = run / "lds" / "outputs" / f"subset_{j}_s{k}.npz"
            save_npz(path, f=f, dtrak=outputs[:, j, k], target_id=np.arange(8), grid=[900, 500, 0])
    save_npz(
        run / "data" / "digits" / "train.npz",
        images=np.zeros((10, 1, 4, 4), np.uint8),
        labels=np.arange(10) % 2,
        class_names=np.array(["3", "5"]),
    )
    save_json(
        run / "models" / "subset_0_s0" / "config.json",
        {
            "unet": {"block_out_channels": [16, 32]},
            "info": {
                "num_train_images": 5, "subset_size": 5, "steps": 40,
                "train": {"batch_size": 5, "lr_schedule": "cosine"},
            },
        },
    )  # fmt: skip
    bench = run / "benchmarks" / "retrain" / "subset_0_s0.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tcpu_time\n100.0\t0:01:40\t80.0\n")
    row = regime_row(run, n_boot=20)
    assert row["regime"] == "two_class" and row["classes"] == 2 and row["n_train"] == 10
    assert row["epochs"] == 20.0 and row["lr_schedule"] == "cosine" and row["channels"] == "16x32"
    assert (row["subsets"], row["seeds"], row["targets"]) == (6, 2, 8)
    assert row["ceiling_mean"] == pytest.approx(1.0) and row["ceiling_t500"] == pytest.approx(1)
    assert row["subset_model_wall_s"] == 100.0 and row["subset_model_cpu_s"] == 80.0
    screen = tmp_path / "screen.yaml"
    screen.write_text("subsets: {count: 3, heldout: 0, seeds: 2}\n")
    assert screen_targets("out", screen) == [
        f"out/lds/outputs/subset_{j}_s{k}.npz" for j in range(3) for k in range(2)
    ]
    assert len(screen_targets("out")) == 12  # config/regimes/screen.yaml: 6 subsets x 2 seeds
    assert "| two_class | 2 | 10 | 20.0 | cosine | 16x32 | 6 x 2 | 1.00 |" in markdown(
        pd.DataFrame([row])
    )


def test_compare_runs_pairs_one_method_across_two_runs(tmp_path):
    """stepattr.lds.regimes compare: each side's LDS equals the tables' LDS, a side against
    itself differs by exactly 0, two methods of one run pair up, and runs with different
    subset outputs are refused."""
    from stepattr.lds.metric import lds_per_target, predicted_outputs, spearman_rows
    from stepattr.lds.regimes import compare_runs
    from stepattr.training.subsets import save_masks

    rng = np.random.default_rng(6)
    m, n, rows, grid = 6, 12, 10, [900, 0]
    masks = rng.random((rows, n)) < 0.5
    scores = {"a": rng.standard_normal((m, 2, n)), "b": rng.standard_normal((m, 2, n))}
    outputs = [(rng.standard_normal((m, 2)), rng.standard_normal(m)) for _ in range(rows)]
    for name in ("a", "b"):
        run = tmp_path / name
        save_masks(run / "subsets" / "masks.npy", masks)
        for j, (f, d) in enumerate(outputs):
            save_npz(run / "lds" / "outputs" / f"subset_{j}_s0.npz", f=f, dtrak=d,
                     target_id=np.arange(m), grid=grid)  # fmt: skip
        (run / "scores" / "trak").mkdir(parents=True)
        np.save(run / "scores" / "trak" / "scores.npy", scores[name])
        np.save(run / "scores" / "trak" / "whole_loss.npy", scores[name].mean(axis=1))
    table = compare_runs(
        (tmp_path / "a", "trak"), (tmp_path / "b", "trak"), scored_rows=8, n_boot=50
    )
    assert table["step"].tolist() == ["900", "0", "whole loss"]
    assert "half_subsets" not in table  # the axis parts only where asked for
    losses = np.stack([f[:, 1] for f, _ in outputs[:8]], axis=1)
    direct = np.nanmean(spearman_rows(predicted_outputs(masks[:8], scores["a"][:, 1]), -losses))
    assert table.loc[1, "lds_a"] == pytest.approx(direct)
    assert table.loc[1, "lds_a"] == pytest.approx(
        np.nanmean(lds_per_target(scores["a"][:, 1], masks[:8], losses))
    )  # the tables' own LDS: Spearman against -loss
    assert table["a_minus_b"].to_numpy() == pytest.approx(table["lds_a"] - table["lds_b"])
    same = compare_runs(
        (tmp_path / "a", "trak"), (tmp_path / "a", "trak"), scored_rows=8, n_boot=50
    )
    assert (same["a_minus_b"] == 0).all() and (same["ci_low"] == 0).all()
    (tmp_path / "a" / "scores" / "pixel").mkdir()
    np.save(tmp_path / "a" / "scores" / "pixel" / "scores.npy", scores["b"])
    np.save(tmp_path / "a" / "scores" / "pixel" / "whole_loss.npy", scores["b"].mean(axis=1))
    methods = compare_runs((tmp_path / "a", "trak"), (tmp_path / "a", "pixel"), 8, n_boot=50)
    pd.testing.assert_frame_equal(methods, table)  # the same scores, by method or by run
    parts = compare_runs((tmp_path / "a", "trak"), (tmp_path / "a", "pixel"), 8, 50, parts=True)
    pd.testing.assert_frame_equal(parts[table.columns], table)  # --parts only adds columns
    halves = parts[["half_subsets", "half_targets"]].to_numpy()
    assert (halves > 0).all() and (halves < 1).all()
    save_npz(tmp_path / "b" / "lds" / "outputs" / "subset_0_s0.npz", f=outputs[1][0],
             dtrak=outputs[0][1], target_id=np.arange(m), grid=grid)  # fmt: skip
    with pytest.raises(ValueError, match="do not share their subset outputs"):
        compare_runs((tmp_path / "a", "trak"), (tmp_path / "b", "trak"), scored_rows=8, n_boot=50)


def test_lambda_curves_read_each_projection_dimension_from_the_first_columns(tmp_path):
    """stepattr.lds.regimes lambdas --dims: the k'-column rows are TRAK on the features' first
    k' columns, scored as the tables score (held-out rows apart from scored ones)."""
    from stepattr.lds.metric import lds_per_target, mean_lds_over_steps
    from stepattr.lds.regimes import lambda_curves
    from stepattr.training.subsets import save_masks
    from stepattr.trak.storage import save_features

    rng = np.random.default_rng(8)
    m, n, k, rows, grid = 4, 40, 6, 10, [900, 0]
    run = tmp_path / "run"
    masks = rng.random((rows, n)) < 0.5
    save_masks(run / "subsets" / "masks.npy", masks)
    info = {"featurizer": "test", "model_sha256": "0"}
    phi = rng.standard_normal((n, k))
    features = run / "features" / "trak" / "full_0"
    save_features(features / "train.npy", phi, "float32", info)
    target = {name: rng.standard_normal((2, 2, k)) for name in ("generated", "validation")}
    for name, part in target.items():
        save_features(features / f"{name}.npy", part, "float32", info)
        save_features(features / f"{name}_whole_loss.npy", part[:, :1], "float32", info)
    outputs = [(rng.standard_normal((m, 2)), rng.standard_normal(m)) for _ in range(rows)]
    for j, (f, d) in enumerate(outputs):
        save_npz(run / "lds" / "outputs" / f"subset_{j}_s0.npz", f=f, dtrak=d,
                 target_id=np.arange(m), grid=grid)  # fmt: skip
    curves = lambda_curves(run, "trak", [0.1, 10.0], scored_rows=7, proj_dims=[3])
    assert set(curves["method"]) == {"trak", "trak k=3"} and len(curves) == 2 * 2 * 2
    row = curves[(curves["method"] == "trak k=3") & (curves["lambda"] == 10.0)]
    row = row[row["subsets"] == "heldout (3)"].iloc[0]
    both = np.concatenate([target["generated"], target["validation"]])[..., :3]
    kernel = np.linalg.inv(phi[:, :3].T @ phi[:, :3] + 10.0 * np.eye(3))
    scores = both @ kernel @ phi[:, :3].T  # brute force, float64: (m, G, n)
    f = np.stack([o[0] for o in outputs[7:]], axis=-1)
    assert row["per_step"] == pytest.approx(mean_lds_over_steps(scores, masks[7:], f), abs=1e-6)
    whole = scores[:, 0]  # the whole-loss features are the first step's here
    dtrak = np.stack([o[1] for o in outputs[7:]], axis=-1)
    assert row["dtrak"] == pytest.approx(np.nanmean(lds_per_target(whole, masks[7:], dtrak)))


def test_step_table_centres_away_a_shift_shared_by_all_targets(tmp_path):
    """stepattr.lds.regimes steps: against outputs that are the method's prediction plus a
    per-subset shift shared by every target (training noise common to all targets), the plain
    LDS is low and the centred one is exactly 1; --fresh reads f_fresh; plain LDS equals the
    tables' own."""
    from stepattr.lds.metric import lds_per_target, predicted_outputs
    from stepattr.lds.regimes import step_table
    from stepattr.training.subsets import save_masks

    rng = np.random.default_rng(9)
    m, n, rows, grid = 8, 16, 12, [900, 0]
    masks = rng.random((rows, n)) < 0.5
    scores = rng.standard_normal((m, 2, n))
    shift = 50.0 * rng.standard_normal(rows)  # one draw per subset model, all targets alike
    f = -predicted_outputs(masks, scores) + shift  # (m, 2, rows)
    run = tmp_path / "run"
    save_masks(run / "subsets" / "masks.npy", masks)
    for j in range(rows):
        save_npz(run / "lds" / "outputs" / f"subset_{j}_s0.npz", f=f[..., j],
                 f_fresh=-f[..., j], dtrak=np.zeros(m), target_id=np.arange(m),
                 grid=grid)  # fmt: skip
    (run / "scores" / "trak").mkdir(parents=True)
    np.save(run / "scores" / "trak" / "scores.npy", scores)
    plain = step_table(run, ["trak"], 10, n_boot=20)
    centred = step_table(run, ["trak"], 10, centred=True, n_boot=20)
    fresh = step_table(run, ["trak"], 10, ground_truth="f_fresh", n_boot=20)
    direct = np.nanmean(lds_per_target(scores, masks[:10], f[..., :10]), axis=0)
    assert plain["lds"].to_numpy() == pytest.approx(direct)
    assert (plain["lds"] < 0.5).all()
    assert centred["lds"].to_numpy() == pytest.approx(1.0)
    assert fresh["lds"].to_numpy() == pytest.approx(-direct)
