"""Factored projection: equal to (P_out ⊗ P_in)^T of the per-example gradients, on tiny UNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stepattr.core.diffusion import Schedule, build_unet
from stepattr.core.names import attribution_methods, parse_method, unsuffixed_projector
from stepattr.core.output_functions import train_draws
from stepattr.trak.factored import FactoredFeaturizer, factor_widths, layer_widths, plan_factors
from stepattr.trak.features import make_featurizer, train_features
from stepattr.trak.gradients import parameter_names, per_example_gradients, prepare_model
from stepattr.workflow.checks import ConfigError, check_config
from stepattr.workflow.configs import load_config

ALPHAS = Schedule().alphas_cumprod
FULL = 10**9  # a budget so large that every factor and the small block are exact
# a second architecture: 3 channels, attention at full resolution (Linear over 64 positions)
WIDE_ATTENTION = {
    "block_out_channels": [4, 8],
    "layers_per_block": 1,
    "attention_levels": [0],
    "norm_num_groups": 2,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def unet(model_cfg: dict, channels: int, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return prepare_model(build_unet(model_cfg, 8, channels).to(dtype))


def batch(channels: int, size: int = 3, draws: int = 2, dtype=torch.float64):
    gen = torch.Generator().manual_seed(5)
    x0 = (torch.rand(size, channels, 8, 8, generator=gen) * 2 - 1).to(dtype)
    ts, ns = train_draws(0, range(size), draws, (channels, 8, 8), 1000)
    return x0, ts, ns.to(dtype)


def model_and_batch(which: str, ci_model_cfg: dict):
    cfg, channels = (ci_model_cfg, 1) if which == "ci" else (WIDE_ATTENTION, 3)
    return unet(cfg, channels), batch(channels)


@pytest.mark.parametrize("which", ["ci", "wide_attention"])
@pytest.mark.parametrize("kind", ["loss", "square_norm"])
def test_full_size_factors_give_the_per_example_gradients(ci_model_cfg, which, kind):
    """Identity factors: each layer's block is its weight's per-example gradient, exactly."""
    model, (x0, ts, ns) = model_and_batch(which, ci_model_cfg)
    featurizer = FactoredFeaturizer(model, kind, ALPHAS, FULL, seed=0)
    assert featurizer.dim == sum(p.numel() for p in model.parameters())
    assert any(isinstance(model.get_submodule(n), nn.Linear) for n in featurizer.plan.layers)
    feats = featurizer(x0, ts, ns)
    grads = per_example_gradients(model, kind, ALPHAS, x0, ts, ns)
    sizes = [p.numel() for p in model.parameters()]
    by_name = dict(zip(parameter_names(model), grads.split(sizes, dim=1), strict=True))
    want = [by_name[f"{layer}.weight"] for layer in featurizer.plan.layers]
    want += [by_name[name] for name in featurizer.plan.small]
    torch.testing.assert_close(feats, torch.cat(want, dim=1), rtol=1e-9, atol=1e-12)
    assert feats[0].abs().sum() > 0 and not torch.allclose(feats[0], feats[1])


@pytest.mark.parametrize("which", ["ci", "wide_attention"])
def test_random_factors_equal_the_dense_kronecker_projection(ci_model_cfg, which):
    model, (x0, ts, ns) = model_and_batch(which, ci_model_cfg)
    featurizer = FactoredFeaturizer(model, "loss", ALPHAS, 300, seed=4)
    assert featurizer.small_projector is not None and featurizer.mixer is None
    assert featurizer.dim == 300
    grads = per_example_gradients(model, "loss", ALPHAS, x0, ts, ns)
    matrix = featurizer.dense_matrix()
    # the dense matrix is (P_out ⊗ P_in) on each factored weight, independently built here
    first = featurizer.plan.layers[0]
    rows = slice(0, model.get_submodule(first).weight.numel())
    k = featurizer.plan.widths[0][0] * featurizer.plan.widths[0][1]
    kron = torch.einsum("ok,il->oikl", featurizer.out_factors[0], featurizer.in_factors[0])
    torch.testing.assert_close(matrix[rows, :k], kron.reshape(rows.stop, k))
    assert parameter_names(model)[0] == f"{first}.weight"
    torch.testing.assert_close(featurizer(x0, ts, ns), grads @ matrix, rtol=1e-9, atol=1e-12)


def test_expansion_mixes_a_larger_sketch_down_to_dim(ci_model_cfg):
    model, (x0, ts, ns) = model_and_batch("wide_attention", ci_model_cfg)
    single = FactoredFeaturizer(model, "square_norm", ALPHAS, 300, seed=4)
    mixed = FactoredFeaturizer(model, "square_norm", ALPHAS, 300, seed=4, expansion=3)
    assert mixed.dim == 300 and mixed.plan.dim == 900 and mixed.mixer is not None
    assert sum(a * b for a, b in mixed.plan.widths) > sum(a * b for a, b in single.plan.widths)
    grads = per_example_gradients(model, "square_norm", ALPHAS, x0, ts, ns)
    want = grads @ mixed.dense_matrix()
    torch.testing.assert_close(mixed(x0, ts, ns), want, rtol=1e-9, atol=1e-12)


def test_factors_are_scaled_rademacher_seeded_per_model(ci_model_cfg):
    model = unet(ci_model_cfg, 1)
    one = FactoredFeaturizer(model, "loss", ALPHAS, 300, seed=4)
    again = FactoredFeaturizer(model, "loss", ALPHAS, 300, seed=4)
    other = FactoredFeaturizer(model, "loss", ALPHAS, 300, seed=5)
    torch.testing.assert_close(one.dense_matrix(), again.dense_matrix())
    assert not torch.equal(one.in_factors[1], other.in_factors[1])
    p_in, (_, k_in) = one.in_factors[1], one.plan.widths[1]
    assert p_in.shape[1] == k_in < p_in.shape[0]
    torch.testing.assert_close(p_in.abs(), torch.full_like(p_in, k_in**-0.5))
    assert not torch.equal(one.in_factors[1], one.in_factors[2][: p_in.shape[0]])


def test_features_do_not_depend_on_batch_size_or_passes(ci_model_cfg):
    model = unet(ci_model_cfg, 1, torch.float32)
    featurizer = make_featurizer(model, "loss", ALPHAS, "factored", 200, 2, factored_expansion=2)
    images = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    whole = train_features(featurizer, images, np.arange(7), 3, 0, 1000, batch_size=7)
    small = train_features(featurizer, images, np.arange(7), 3, 0, 1000, batch_size=2)
    passes = make_featurizer(model, "loss", ALPHAS, "factored", 200, 2, 1, factored_expansion=2)
    one_draw = train_features(passes, images, np.arange(7), 3, 0, 1000, batch_size=4)
    assert whole.shape == (7, featurizer.dim) and featurizer.dim == 200
    np.testing.assert_allclose(small, whole, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(one_draw, whole, rtol=1e-4, atol=1e-6)


def test_hooks_are_removed_and_the_model_is_unchanged(ci_model_cfg):
    model = unet(ci_model_cfg, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    featurizer = FactoredFeaturizer(model, "loss", ALPHAS, 300, seed=0)
    x0, ts, ns = batch(1)
    featurizer(x0, ts, ns)
    with pytest.raises(RuntimeError):  # noises of the wrong size fail after hooks are set
        featurizer(x0, ts, ns[..., :4, :4])
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_layer_widths_keep_thin_sides_and_small_layers_whole():
    assert layer_widths(36, 32, 288) == (6, 6)
    assert layer_widths(40, 32, 288) == (6, 6)
    assert layer_widths(42, 32, 288) == (6, 7)
    assert layer_widths(36, 1, 144) == (1, 36)  # conv_out: one output channel
    assert layer_widths(36, 32, 4) == (9, 4)  # thin input
    assert layer_widths(72, 8, 9) == (8, 9)  # at most 72 weights: exact


def test_factor_widths_fill_the_budget():
    shapes = [(8, 9), (32, 8), (32, 288), (1, 32)] * 10
    widths, small = factor_widths(shapes, 2048, small_params=500)
    used = sum(o * i for o, i in widths)
    assert used + small == 2048 and small >= 2048 // 41
    shares = [b for b in range(1, 200) if [layer_widths(b, *sh) for sh in shapes] == widths]
    assert shares  # every layer got the same share b, and b + 1 would not fit
    wider = [layer_widths(max(shares) + 1, *shape) for shape in shapes]
    assert sum(o * i for o, i in wider) > 2048 - 2048 // 41
    assert all(o <= d_o and i <= d_i for (o, i), (d_o, d_i) in zip(widths, shapes, strict=True))
    # everything exact: a factor of full width, the small block unprojected
    widths, small = factor_widths(shapes, FULL, small_params=500)
    assert widths == shapes and small == 500
    with pytest.raises(ValueError, match="30 dims .* are too few"):
        factor_widths(shapes, 30, small_params=500)


def test_uncovered_parameters_and_grouped_convs_are_refused():
    with pytest.raises(ValueError, match=r"parameter 1\.weight \(BatchNorm1d\.weight\)"):
        plan_factors(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), 64)
    plan = plan_factors(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), 64)  # small block
    assert plan.small == ("0.bias", "1.weight", "1.bias")
    with pytest.raises(ValueError, match=r"0\.weight: .*groups = 2"):
        plan_factors(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), 64)
    frozen = nn.Sequential(nn.Linear(4, 4))
    frozen[0].weight.requires_grad_(False)  # its bias alone would never be hooked
    with pytest.raises(ValueError, match=r"parameter 0\.bias"):
        plan_factors(frozen, 64)


def test_compare_projectors_add_suffixed_methods():
    att = {"projector": "auto", "compare_projectors": ["factored"], "output_functions": ["loss"]}
    assert attribution_methods(att) == ["trak", "trak_factored"]
    swapped = {**att, "projector": "factored", "compare_projectors": ["normal"]}
    assert attribution_methods(swapped) == ["trak_factored", "trak"]
    assert parse_method("trak", unsuffixed_projector(swapped)) == ("loss", "normal")
    assert parse_method("trak_factored", unsuffixed_projector(swapped)) == ("loss", "factored")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"compare_projectors": ["rademacher"]}, "both give method 'trak'"),
        ({"proj_dim": 40, "factored_expansion": 1}, "40 dims .* are too few"),
        ({"projector": "factored", "compare_projectors": []}, None),
    ],
)
def test_check_config_rejects_projectors_that_cannot_run(repo, change, message):
    cfg = load_config([repo / "config" / "ci.yaml"])
    cfg["attribution"].update(change)
    if message is None:
        check_config(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)
