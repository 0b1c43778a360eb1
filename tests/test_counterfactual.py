"""Counterfactual check: removal masks, the random control, interval replacement, evaluation
and table aggregation (tiny models and files, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from tiny_models import TINY_UNET

from stepattr.core.diffusion import Schedule, build_unet, eps_model, sample, save_model, unet_kwargs
from stepattr.core.names import SCORE_FILES, parse_removed_model_id, removed_model_id
from stepattr.core.output_functions import output_value, target_draws
from stepattr.counterfactual.removal import (
    CounterfactualPair,
    IntervalModel,
    evaluate_removal_model,
    interval_low,
    keep_mask,
    random_removal,
    removal_count,
    resolve_pairs,
    select_removed,
    top_k,
    write_removal,
)
from stepattr.counterfactual.report import (
    counterfactual_markdown,
    pair_changes,
    plot_counterfactual,
    removal_summary,
    summarize,
)
from stepattr.detectors.detector import Detector
from stepattr.training.subsets import load_subset_row
from stepattr.transitions.curves import sample_completions

GRID = [900, 500, 200, 0]


# ----------------------------------------------------------------------------- removals


def test_top_k_takes_the_highest_scores_and_breaks_ties_by_index():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(np.float64)  # many ties
    k = 7
    brute = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    assert top_k(scores, k).tolist() == brute
    # the same scores in another order of equal values give the same set rule
    assert top_k(scores, k).tolist() == top_k(scores.copy(), k).tolist()


def test_top_k_rejects_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([1.0, np.nan, 0.0]), 1)


def test_keep_mask_removes_exactly_the_given_examples():
    mask = keep_mask(10, np.array([3, 0, 7]))
    assert mask.shape == (1, 10) and mask.dtype == bool
    assert np.flatnonzero(~mask[0]).tolist() == [0, 3, 7]
    with pytest.raises(ValueError, match="distinct"):
        keep_mask(10, np.array([1, 1]))
    with pytest.raises(ValueError):
        keep_mask(10, np.array([10]))


def test_random_control_is_seeded_distinct_and_keyed_by_its_coordinates():
    a = random_removal(500, 25, seed=0, target_id=3, step=500)
    assert np.array_equal(a, random_removal(500, 25, seed=0, target_id=3, step=500))
    assert len(np.unique(a)) == 25 and a.min() >= 0 and a.max() < 500
    for other in (
        random_removal(500, 25, seed=1, target_id=3, step=500),
        random_removal(500, 25, seed=0, target_id=4, step=500),
        random_removal(500, 25, seed=0, target_id=3, step=200),
    ):
        assert not np.array_equal(np.sort(a), np.sort(other))


def test_select_removed_per_rule():
    scores = np.arange(20, dtype=np.float64)[::-1]  # index 0 is the top influencer
    assert select_removed("trak", 3, 20, scores, 0, 0, 500).tolist() == [0, 1, 2]
    assert select_removed("pixel", 2, 20, -scores, 0, 0, 500).tolist() == [19, 18]
    assert len(select_removed("random", 4, 20, None, 0, 0, 500)) == 4
    with pytest.raises(ValueError, match="needs 20 scores"):
        select_removed("trak", 3, 20, None, 0, 0, 500)


def test_removal_count_rounds_and_rejects_empty_or_total_removals():
    assert removal_count(0.01, 4500) == 45
    assert removal_count(0.05, 300) == 15
    with pytest.raises(ValueError, match="counterfactual.fractions"):
        removal_count(0.001, 100)


def test_model_ids_round_trip():
    assert parse_removed_model_id(removed_model_id("pixel", 2, 1)) == ("pixel", 2, 1)
    with pytest.raises(ValueError):
        parse_removed_model_id("subset_0_s0")


def _write_inputs(tmp_path: Path, n_train: int = 30) -> dict[str, Path]:
    """A generated set of 3 targets, a train split, TRAK and pixel scores, and pairs.csv."""
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "generated.npz",
        grid=np.array(GRID, dtype=np.int64),
        target_id=np.arange(3, dtype=np.int64),
    )
    np.savez(
        tmp_path / "train.npz",
        images=rng.integers(0, 255, size=(n_train, 1, 8, 8), dtype=np.uint8),
        labels=rng.integers(0, 10, size=n_train).astype(np.int64),
        class_names=np.array([str(c) for c in range(10)]),
    )
    # rows: 3 generated targets, then one validation target (id 3) that must never be read
    index = pd.DataFrame(
        {
            "row": range(4),
            "target_set": ["generated"] * 3 + ["validation"],
            "target_id": range(4),
            "label": [-1, -1, -1, 5],
        }
    )
    for name in ("trak", "pixel"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "scores.npy", rng.normal(size=(4, len(GRID), n_train)))
        index.to_csv(tmp_path / name / "index.csv", index=False)
        (tmp_path / name / "meta.json").write_text(json.dumps({"method": name, "grid": GRID}))
    pd.DataFrame(
        {"pair": [0, 1], "target_id": [2, 1], "step": [500, 200], "t_low": [200, 0]}
    ).to_csv(tmp_path / "pairs.csv", index=False)
    return {"dir": tmp_path}


@pytest.mark.parametrize("rule", ["trak", "pixel", "random"])
def test_write_removal_masks_exactly_the_rules_top_k(tmp_path, rule):
    _write_inputs(tmp_path)
    trak = tuple(tmp_path / "trak" / f for f in SCORE_FILES)
    own = None if rule == "random" else tuple(tmp_path / rule / f for f in SCORE_FILES)
    table = write_removal(
        rule=rule, pair=0, fraction=0.2, seed=0, pairs_path=tmp_path / "pairs.csv",
        targets_path=tmp_path / "generated.npz", train_path=tmp_path / "train.npz",
        trak_paths=trak, rule_paths=own, mask_path=tmp_path / "mask.npy",
        table_path=tmp_path / "removed.csv",
    )  # fmt: skip
    k = 6  # 0.2 x 30
    trak_row = np.load(trak[0])[2, GRID.index(500)]  # pair 0: target 2 at t = 500
    if rule == "random":
        expected = random_removal(30, k, 0, 2, 500)
        assert table["score"].isna().all()
    else:
        row = np.load(tmp_path / rule / "scores.npy")[2, GRID.index(500)]
        expected = np.argsort(-row)[:k]
        assert np.allclose(table["score"], row[expected])
    assert table["train_index"].tolist() == expected.tolist()
    assert np.allclose(table["trak_score"], trak_row[expected])
    mask = load_subset_row(tmp_path / "mask.npy", 0, 30)  # what the training code reads
    assert sorted(np.flatnonzero(~mask).tolist()) == sorted(expected.tolist())
    assert pd.read_csv(tmp_path / "removed.csv")["train_index"].tolist() == expected.tolist()


# ----------------------------------------------------------------------------- pairs


def test_interval_low_is_one_grid_spacing_or_delta():
    assert interval_low(GRID, 500, None) == 200
    assert interval_low(GRID, 0, None) == -1
    assert interval_low(GRID, 500, 100) == 400
    assert interval_low(GRID, 50, 100) == -1


def test_resolve_pairs_takes_null_steps_from_the_transition_interval():
    intervals = pd.DataFrame({"target_id": [0, 1], "t_start": [900, 500], "t_end": [500, 200]})
    pairs = resolve_pairs(
        [CounterfactualPair(1, None), CounterfactualPair(0, 200)], GRID, 2, intervals, None
    )
    assert pairs.to_dict("list") == {
        "pair": [0, 1],
        "target_id": [1, 0],
        "step": [500, 200],
        "t_low": [200, 0],
    }
    with pytest.raises(ValueError, match=r"pairs\[0\].step = 300"):
        resolve_pairs([CounterfactualPair(0, 300)], GRID, 2, None, None)
    with pytest.raises(ValueError, match=r"pairs\[0\].target = 5"):
        resolve_pairs([CounterfactualPair(5, 500)], GRID, 2, None, None)


# ----------------------------------------------------------------------------- interval model


class RecordingModel(torch.nn.Module):
    """Predicts a constant noise and records the timesteps it was called at."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the sampler a device
        self.value = value
        self.calls: list[int] = []

    def forward(self, x, t):
        self.calls += t.tolist()
        return type("Out", (), {"sample": torch.full_like(x, self.value)})()


def test_interval_model_uses_the_replacement_exactly_on_the_interval_steps():
    schedule = Schedule()
    original, replacement = RecordingModel(0.0), RecordingModel(1.0)
    start, low = 700, 400
    timesteps = schedule.inference_timesteps(20, start=start)  # 700, 650, ..., 0
    model = IntervalModel(original, replacement, low, start)
    sample(model, schedule, torch.zeros(1, 1, 4, 4), timesteps, torch.Generator().manual_seed(0))
    assert replacement.calls == [t for t in timesteps if low < t <= start]
    assert original.calls == [t for t in timesteps if t <= low]
    assert set(replacement.calls) == {700, 650, 600, 550, 500, 450}


def test_interval_model_dispatches_rows_of_a_mixed_batch():
    model = IntervalModel(RecordingModel(0.0), RecordingModel(1.0), low=400, high=700)
    t = torch.tensor([900, 700, 500, 400, 0])
    out = model(torch.zeros(5, 1, 2, 2), t).sample
    assert out[:, 0, 0, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_interval_replacement_with_distinguishable_models_changes_only_what_it_should():
    """Completions of a real (tiny) UNet pair: replacing an empty set of steps changes
    nothing, and replacing every step equals sampling with the replacement alone."""
    schedule = Schedule()
    torch.manual_seed(0)
    a, b = build_unet(TINY_UNET, 8, 1).eval(), build_unet(TINY_UNET, 8, 1).eval()
    x_t = torch.randn(1, 1, 8, 8)

    def complete(model):
        return sample_completions(model, schedule, x_t, 500, [0], 3, 20, 0, 8)

    with torch.no_grad():
        assert torch.equal(complete(IntervalModel(a, b, 500, 500)), complete(a))
        assert torch.equal(complete(IntervalModel(a, b, -1, 500)), complete(b))
        assert not torch.equal(complete(IntervalModel(a, b, 200, 500)), complete(a))


# ----------------------------------------------------------------------------- evaluation


def _save_unet(directory: Path, seed: int) -> None:
    torch.manual_seed(seed)
    unet = build_unet(TINY_UNET, 8, 1)
    save_model(directory, unet, unet_kwargs(TINY_UNET, 8, 1), Schedule(), {"seed": seed})


def _mean_sign_detector() -> Detector:
    def proba(images):
        positive = torch.as_tensor(np.asarray(images)).flatten(1).mean(1).numpy() > 0
        return np.stack([~positive, positive], axis=1).astype(np.float64)

    return Detector("mean-sign", ["dark", "bright"], proba)


def test_evaluate_model_f_t_and_common_random_numbers(tmp_path):
    _save_unet(tmp_path / "full_0", 0)
    _save_unet(tmp_path / "other", 1)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, size=(2, 1, 8, 8)).astype(np.float32)
    np.savez(
        tmp_path / "generated.npz",
        x_t=rng.normal(size=(2, len(GRID), 1, 8, 8)).astype(np.float32),
        x0hat=rng.uniform(-1, 1, size=(2, len(GRID), 1, 8, 8)).astype(np.float32),
        x0=x0,
        grid=np.array(GRID, dtype=np.int64),
        target_id=np.arange(2, dtype=np.int64),
        label=np.full(2, -1, dtype=np.int64),
    )
    pairs = pd.DataFrame({"pair": [0], "target_id": [1], "step": [500], "t_low": [200]})
    kwargs = dict(
        resamples=3, output_seed=7, completions=6, completion_steps=20, completion_seed=0,
        batch_size=16,
    )  # fmt: skip
    detector = _mean_sign_detector()
    ref = evaluate_removal_model(
        "full_0", tmp_path / "full_0", tmp_path / "full_0", tmp_path / "generated.npz", pairs,
        detector, **kwargs,
    )  # fmt: skip
    # the reference as its own original: (a) and (b) are the same completions
    assert ref["same_interval"].iloc[0] == ref["same_rest"].iloc[0]
    assert ref["feature"].iloc[0] == int(x0[1].mean() > 0)
    # f_t by hand: R noises of target 1 at t = 500 on x0hat[1, grid index of 500]
    from stepattr.core.diffusion import load_model

    unet, schedule, _ = load_model(tmp_path / "full_0")
    ts, ns = target_draws(7, [1], 500, 3, (1, 8, 8))
    x0hat = torch.from_numpy(np.load(tmp_path / "generated.npz")["x0hat"][1:2, 1])
    with torch.no_grad():
        f = output_value(eps_model(unet), "loss", x0hat, ts, ns, schedule.alphas_cumprod)
    assert ref["f"].iloc[0] == pytest.approx(float(f[0]), rel=1e-6)
    other = evaluate_removal_model(
        "other", tmp_path / "other", tmp_path / "full_0", tmp_path / "generated.npz", pairs,
        detector, **kwargs,
    )  # fmt: skip
    assert other["f"].iloc[0] != pytest.approx(ref["f"].iloc[0])
    assert 0 <= other["same_interval"].iloc[0] <= 6 and other["n"].iloc[0] == 6


# ----------------------------------------------------------------------------- aggregation


def _evals() -> pd.DataFrame:
    base = {"target_id": 0, "step": 500, "t_low": 200, "feature": 1, "n": 8, "detector": "d"}
    rows = [  # model, pair, f, same (a), same (b); the reference full_0 on both pairs
        ("full_0", 0, 1.0, 6, 6),
        ("full_0", 1, 2.0, 8, 8),
        ("removed_trak_p0_f0", 0, 1.2, 3, 1),
        ("removed_trak_p1_f0", 1, 2.8, 5, 2),
        ("removed_random_p0_f0", 0, 0.9, 6, 5),
        ("removed_random_p1_f0", 1, 2.2, 8, 7),
    ]
    names = ["model_id", "pair", "f", "same_interval", "same_rest"]
    return pd.DataFrame([{**base, **dict(zip(names, row, strict=True))} for row in rows])


def _removals(tmp_path: Path) -> pd.DataFrame:
    ids = [f"removed_{r}_p{p}_f0" for r in ("trak", "random") for p in (0, 1)]
    paths = []
    for i, model_id in enumerate(ids):
        path = tmp_path / f"{model_id}.csv"
        pd.DataFrame({"train_index": [0, 1, 2], "trak_score": [0.1 * i, 0.2, 0.3]}).to_csv(
            path, index=False
        )
        paths.append(path)
    return removal_summary(ids, paths, [0.1])


def test_table_aggregation_matches_a_hand_computation(tmp_path):
    removals = _removals(tmp_path)
    assert removals["predicted_df"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    per_pair = pair_changes(_evals(), removals, "full_0")
    trak = per_pair[per_pair["rule"] == "trak"]
    assert trak["df"].tolist() == pytest.approx([0.2, 0.8])
    assert trak["df_rel"].tolist() == pytest.approx([20.0, 40.0])
    summary = summarize(per_pair, ["trak", "random"]).set_index("rule")
    row = summary.loc["trak"]
    # mean 0.5, sd of (0.2, 0.8) = 0.3 * sqrt(2), se = 0.3, t_{0.975, 1} = 12.7062
    assert row["df"] == pytest.approx(0.5)
    assert row["df_ci_high"] - row["df"] == pytest.approx(12.7062047 * 0.3, rel=1e-6)
    assert row["df_rel"] == pytest.approx(30.0)
    assert row["k"] == 3 and row["pairs"] == 2 and row["completions"] == 16
    assert row["predicted_df"] == pytest.approx(0.55)
    # pooled over pairs: (3 + 5) / 16 under (a), (1 + 2) / 16 under (b); reference 14 / 16
    assert row["p_interval"] == pytest.approx(0.5)
    assert row["p_rest"] == pytest.approx(3 / 16)
    assert row["ref_p_interval"] == pytest.approx(14 / 16)
    z, n, p = 1.959963984540054, 16, 0.5  # Wilson by hand
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (row["p_interval_ci_low"], row["p_interval_ci_high"]) == pytest.approx(
        (centre - half, centre + half)
    )
    random = summary.loc["random"]
    assert random["df"] == pytest.approx(0.05)  # (-0.1 + 0.2) / 2
    assert list(summary.index) == ["trak", "random"]


def test_single_pair_has_no_ci_over_pairs_and_renders(tmp_path):
    removals = _removals(tmp_path)
    evals = _evals()
    keep = evals["pair"] == 0
    per_pair = pair_changes(
        evals[keep], removals[removals["model_id"].str.contains("_p0_")], "full_0"
    )
    summary = summarize(per_pair, ["trak", "random"])
    assert summary["df_ci_low"].isna().all()
    text = counterfactual_markdown(summary, ["- header"])
    assert "| trak | 0.1 | 3 | 1 | 0.2 |" in text
    plot_counterfactual(summary, tmp_path / "cf.png", ["trak", "random"], "title")
    assert (tmp_path / "cf.png").stat().st_size > 0


def test_pair_changes_needs_every_evaluation(tmp_path):
    removals = _removals(tmp_path)
    evals = _evals()
    with pytest.raises(ValueError, match="evaluations"):
        pair_changes(evals[evals["model_id"] != "removed_trak_p1_f0"], removals, "full_0")
    with pytest.raises(ValueError, match="reference"):
        pair_changes(evals[evals["model_id"] != "full_0"], removals, "full_1")


def test_paired_gap_is_a_t_interval_over_pairs_of_the_first_rule_minus_another():
    from stepattr.counterfactual.report import paired_gap

    per_pair = pd.DataFrame(
        {
            "pair": [0, 1, 2, 0, 1, 2, 0],
            "rule": ["trak"] * 3 + ["random"] * 3 + ["pixel"],
            "fraction": [0.05] * 7,
            "df_rel": [5.0, 6.0, 7.0, 1.0, 2.0, 4.0, 9.0],
        }
    )
    gaps = np.array([4.0, 4.0, 3.0])
    half = stats.t.ppf(0.975, 2) * gaps.std(ddof=1) / np.sqrt(3)
    mean, low, high = paired_gap(per_pair, "random", 0.05, "trak")
    assert mean == pytest.approx(gaps.mean())
    assert (low, high) == pytest.approx((gaps.mean() - half, gaps.mean() + half))
    mean, low, high = paired_gap(per_pair, "pixel", 0.05, "trak")  # one shared pair: no CI
    assert mean == pytest.approx(-4.0) and np.isnan(low) and np.isnan(high)
