"""K-FAC / EK-FAC influence: factors, eigenvalues and scores against brute force on tiny UNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stepattr.core.diffusion import Schedule, add_noise, build_unet, eps_model
from stepattr.core.io import save_json, save_npy, save_npz
from stepattr.core.names import (
    SCORE_PARTS,
    influence_methods,
    parse_influence_method,
    subset_model_id,
)
from stepattr.core.output_functions import target_draws, train_draws
from stepattr.influence.jobs import method_scores
from stepattr.influence.kfac import (
    InfluenceSettings,
    RotatedGradients,
    _output_samples,
    fit_bases,
    inverse_weights,
    kronecker_layers,
    stream_scores,
)
from stepattr.trak.gradients import parameter_names, per_example_gradients, prepare_model
from stepattr.trak.storage import load_scores

ALPHAS = Schedule().alphas_cumprod
WIDE_ATTENTION = {  # 3 channels, attention at full resolution (Linear layers over 64 positions)
    "block_out_channels": [4, 8],
    "layers_per_block": 1,
    "attention_levels": [0],
    "norm_num_groups": 2,
}
DRAWS, SEED = 2, 3

pytestmark = pytest.mark.usefixtures("one_thread")


def unet(model_cfg: dict, channels: int) -> nn.Module:
    torch.manual_seed(0)
    return prepare_model(build_unet(model_cfg, 8, channels).double())


def images(channels: int, count: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return (torch.rand(count, channels, 8, 8, generator=gen) * 2 - 1).double()


def model_and_images(which: str, ci_model_cfg: dict):
    cfg, channels = (ci_model_cfg, 1) if which == "ci" else (WIDE_ATTENTION, 3)
    return unet(cfg, channels), images(channels)


def layer_matrices(model: nn.Module, flat: torch.Tensor, layers) -> list[torch.Tensor]:
    """Per-layer ``[W | b]`` gradient matrices ``(B, d_out, d_in)`` from flat gradients."""
    sizes = [p.numel() for p in model.parameters()]
    by_name = dict(zip(parameter_names(model), flat.split(sizes, dim=1), strict=True))
    out = []
    for layer in layers:
        prefix = f"{layer.name}." if layer.name else ""
        weight = by_name[prefix + "weight"].reshape(flat.shape[0], layer.d_out, -1)
        parts = [weight] + ([by_name[prefix + "bias"][..., None]] if layer.bias else [])
        out.append(torch.cat(parts, dim=2))
    return out


def row_gradients(model: nn.Module, x0: torch.Tensor, indices) -> torch.Tensor:
    """Brute force: one autograd call per (example, draw) row of ``<eps_hat_r, xi_r>``."""
    shape = x0.shape[1:]
    ts, ns = train_draws(SEED, indices, DRAWS, shape, 1000)
    xi = _output_samples(SEED, indices, (DRAWS, *shape)).double()
    params = [p for p in model.parameters() if p.requires_grad]
    eps, rows = eps_model(model), []
    for b in range(len(indices)):
        for j in range(DRAWS):
            t = ts[b, j : j + 1]
            x_t = add_noise(x0[b : b + 1], ns[b, j : j + 1].double(), t, ALPHAS)
            value = (eps(x_t, t) * xi[b, j]).sum()
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, params)]))
    return torch.stack(rows)


def explicit_covariances(model: nn.Module, x0: torch.Tensor, indices, layers):
    """A = E_r[sum_pos a a^T], S = E_r[sum_pos g g^T] by plain hooks, one row at a time."""
    shape = x0.shape[1:]
    ts, ns = train_draws(SEED, indices, DRAWS, shape, 1000)
    xi = _output_samples(SEED, indices, (DRAWS, *shape)).double()
    cov_in = [torch.zeros(la.d_in, la.d_in, dtype=torch.float64) for la in layers]
    cov_out = [torch.zeros(la.d_out, la.d_out, dtype=torch.float64) for la in layers]
    seen: dict[int, tuple] = {}

    def keep(index):
        def hook(_module, args, output):
            output.retain_grad()
            seen[index] = (args[0], output)

        return hook

    modules = [model.get_submodule(la.name) for la in layers]
    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]
    eps = eps_model(model)
    try:
        for b in range(len(indices)):
            for j in range(DRAWS):
                t = ts[b, j : j + 1]
                x_t = add_noise(x0[b : b + 1], ns[b, j : j + 1].double(), t, ALPHAS)
                (eps(x_t, t) * xi[b, j]).sum().backward()
                for i, (layer, module) in enumerate(zip(layers, modules, strict=True)):
                    x, out = seen[i]
                    if isinstance(module, nn.Conv2d):
                        a = F.unfold(x, module.kernel_size, module.dilation, module.padding,
                                     module.stride)[0].T  # fmt: skip
                        g = out.grad[0].flatten(1).T
                    else:
                        a, g = x.reshape(-1, x.shape[-1]), out.grad.reshape(-1, out.shape[-1])
                    if layer.bias:
                        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
                    cov_in[i] += a.T @ a
                    cov_out[i] += g.T @ g
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad()
    rows = len(indices) * DRAWS
    return [c / rows for c in cov_in], [c / rows for c in cov_out]


@pytest.mark.parametrize("which", ["ci", "wide_attention"])
def test_factors_and_ekfac_eigenvalues_equal_explicit_expectations(ci_model_cfg, which):
    model, x0 = model_and_images(which, ci_model_cfg)
    layers, uncovered = kronecker_layers(model)
    assert any(isinstance(model.get_submodule(la.name), nn.Linear) for la in layers)
    assert uncovered and all("norm" in name for name in uncovered)
    indices = list(range(len(x0)))
    bases = fit_bases(model, layers, x0, indices, DRAWS, SEED, ALPHAS, batch_size=2)
    cov_in, cov_out = explicit_covariances(model, x0, indices, layers)
    for basis, a, s in zip(bases, cov_in, cov_out, strict=True):
        torch.testing.assert_close(basis.q_in @ torch.diag(basis.lam_in) @ basis.q_in.T, a)
        torch.testing.assert_close(basis.q_out @ torch.diag(basis.lam_out) @ basis.q_out.T, s)
    # EK-FAC: E_r[(Q_S^T G_r Q_A)^2] over brute-force per-row gradients
    per_row = layer_matrices(model, row_gradients(model, x0, indices), layers)
    for basis, g in zip(bases, per_row, strict=True):
        rotated = basis.q_out.T @ g @ basis.q_in
        torch.testing.assert_close(basis.corrected, rotated.pow(2).mean(0))
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


# the output function only changes the per-example gradient, whatever the model: both on the
# small attention model, the loss alone on the ci UNet (its dense Kronecker blocks take a minute)
@pytest.mark.parametrize(
    ("which", "kind"),
    [("ci", "loss"), ("wide_attention", "loss"), ("wide_attention", "square_norm")],
)
def test_scores_equal_the_explicit_inverse_applied_to_brute_force_gradients(
    ci_model_cfg, which, kind
):
    """tau = g_f^T (H + d I)^{-1} g_i, H block-diagonal: EK-FAC formed as Q diag(Lambda) Q^T,
    K-FAC as (S kron A) / M, inverted densely."""
    model, x0 = model_and_images(which, ci_model_cfg)
    layers, uncovered = kronecker_layers(model)
    indices = list(range(len(x0)))
    bases = fit_bases(model, layers, x0, indices, DRAWS, SEED, ALPHAS, batch_size=3)
    rotated = RotatedGradients(model, kind, ALPHAS, layers, bases, uncovered)
    targets = images(x0.shape[1], 2) * 0.5
    t_ts, t_ns = target_draws(0, [0, 1], 400, 2, x0.shape[1:])
    queries = rotated(targets, t_ts, t_ns.double())
    combos = [("ekfac", 0.1), ("kfac", 0.1), ("ekfac", 3.0)]
    weights = inverse_weights(bases, combos)
    scores = stream_scores(rotated, queries, weights, x0, indices, DRAWS, 0, 1000, batch_size=2)

    tr_ts, tr_ns = train_draws(0, indices, DRAWS, x0.shape[1:], 1000)
    g_train = layer_matrices(
        model, per_example_gradients(model, kind, ALPHAS, x0, tr_ts, tr_ns.double()), layers
    )
    g_query = layer_matrices(
        model, per_example_gradients(model, kind, ALPHAS, targets, t_ts, t_ns.double()), layers
    )
    for c, (variant, factor) in enumerate(combos):
        blocks = []
        for basis in bases:
            if variant == "ekfac":
                q = torch.kron(basis.q_out, basis.q_in)
                blocks.append(q @ torch.diag(basis.corrected.flatten()) @ q.T)
            else:
                a = basis.q_in @ torch.diag(basis.lam_in) @ basis.q_in.T
                s = basis.q_out @ torch.diag(basis.lam_out) @ basis.q_out.T
                blocks.append(torch.kron(s, a) / basis.positions)
        # mean eigenvalue = trace / p; H is block-diagonal, so each block is inverted alone
        damping = factor * sum(torch.trace(h) for h in blocks) / sum(len(h) for h in blocks)
        want = sum(
            gq.flatten(1) @ torch.linalg.solve(h + damping * torch.eye(len(h)).double(),
                                               gi.flatten(1).T)
            for h, gq, gi in zip(blocks, g_query, g_train, strict=True)
        )  # fmt: skip
        np.testing.assert_allclose(scores[c], want.numpy(), rtol=1e-6, atol=1e-9)
    assert not np.allclose(scores[0], scores[1])  # the variants differ


def test_scores_do_not_depend_on_batch_size_or_passes(ci_model_cfg):
    model, x0 = model_and_images("ci", ci_model_cfg)
    layers, uncovered = kronecker_layers(model)
    indices = list(range(len(x0)))
    bases = fit_bases(model, layers, x0, indices, DRAWS, SEED, ALPHAS, batch_size=5)
    again = fit_bases(model, layers, x0, indices, DRAWS, SEED, ALPHAS, batch_size=2)
    for one, other in zip(bases, again, strict=True):
        torch.testing.assert_close(one.corrected, other.corrected)
    whole = RotatedGradients(model, "loss", ALPHAS, layers, bases, uncovered)
    passes = RotatedGradients(model, "loss", ALPHAS, layers, bases, uncovered, draws_per_pass=1)
    queries = torch.randn(3, whole.dim, generator=torch.Generator().manual_seed(1)).double()
    weights = inverse_weights(bases, [("ekfac", 1.0)])
    args = (queries, weights, x0, indices, DRAWS, 0, 1000)
    np.testing.assert_allclose(
        stream_scores(whole, *args, batch_size=5),
        stream_scores(passes, *args, batch_size=2),
        rtol=1e-6,
        atol=1e-9,
    )


def test_bad_inputs_are_refused(ci_model_cfg):
    model, x0 = model_and_images("ci", ci_model_cfg)
    layers, uncovered = kronecker_layers(model)
    bases = fit_bases(model, layers, x0[:2], [0, 1], 1, SEED, ALPHAS, batch_size=2)
    with pytest.raises(ValueError, match="influence.dampings"):
        inverse_weights(bases, [("ekfac", 0.0)])
    with pytest.raises(ValueError, match="unknown influence variant"):
        inverse_weights(bases, [("kfac2", 1.0)])
    other = unet(WIDE_ATTENTION, 3)
    other_layers, _ = kronecker_layers(other)
    with pytest.raises(ValueError, match="another model"):
        RotatedGradients(other, "loss", ALPHAS, other_layers[: len(bases)], bases)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="groups"):
        kronecker_layers(grouped)


def write_targets(tmp_path, m=4, grid=(900, 0)):
    rng = np.random.default_rng(3)
    x0hat = rng.uniform(-1, 1, size=(m, len(grid), 1, 4, 4)).astype(np.float32)
    save_npz(
        tmp_path / "generated.npz",
        x_t=x0hat, x0hat=x0hat, x0=x0hat[:, 0], grid=np.array(grid),
        target_id=np.arange(m), label=np.full(m, -1), source_index=np.full(m, -1),
    )  # fmt: skip
    return [tmp_path / "generated.npz"]


def test_damping_is_chosen_on_held_out_subsets_and_scores_averaged_over_models(tmp_path):
    """The held-out outputs favour damping 0.1 (its scores predict them exactly) and 1.0
    predicts them backwards; the job reads only the held-out rows, and writes the average of
    the two models' scores at the chosen damping."""
    rng = np.random.default_rng(0)
    n, m, g = 30, 4, 2
    masks = rng.random((8, n)) < 0.5  # rows 0-3 scored (never given), 4-7 held out
    save_npy(tmp_path / "masks.npy", masks)
    truth = rng.normal(size=(m, g, n))
    heldout = [subset_model_id(row, 0) for row in range(4, 8)]
    outputs = []
    for row, model_id in zip(range(4, 8), heldout, strict=True):
        path = tmp_path / f"{model_id}.npz"
        f = -(truth @ masks[row].astype(float))  # loss falls where the true scores are high
        save_npz(path, f=f, dtrak=f.mean(1), target_id=np.arange(m), grid=np.array([900, 0]))
        outputs.append(path)
    combos = [("ekfac", 0.1), ("ekfac", 1.0), ("kfac", 0.1), ("kfac", 1.0)]
    raws = {"scores": [], "whole_loss": []}
    for i, scale in enumerate((1.0, 3.0)):
        raw = np.stack([truth, -truth, truth, -truth]).astype(np.float32) * scale
        path = tmp_path / f"full_{i}.npy"
        save_npy(path, raw)
        # whole loss: the larger damping predicts it (the protocols choose apart)
        whole = np.stack([-truth, truth, -truth, truth]).mean(axis=2).astype(np.float32) * scale
        save_npy(tmp_path / f"full_{i}_whole_loss.npy", whole)
        raws["whole_loss"].append(tmp_path / f"full_{i}_whole_loss.npy")
        save_json(path.with_suffix(".json"), {
            "model_id": f"full_{i}", "model_sha256": "a", "factors_sha256": "b",
            "output_function": "loss", "target_id": list(range(m)),
            "combos": [{"variant": v, "damping": d} for v, d in combos],
        })  # fmt: skip
        raws["scores"].append(path)
    out = {name: tmp_path / "ekfac" / f"{name}.{ext}" for name, ext in SCORE_PARTS}
    out["whole_loss"] = tmp_path / "ekfac" / "whole_loss.npy"
    influence = InfluenceSettings.from_config({
        "methods": ["ekfac", "kfac"], "dampings": [0.1, 1.0], "fit_examples": None,
        "fit_draws": None, "batch_size": 4, "seed": 0,
    })  # fmt: skip
    targets = write_targets(tmp_path)
    method_scores(
        "ekfac", raws, targets, ["generated"], (tmp_path / "masks.npy", outputs, heldout), out,
        influence, {"config_files": ["config/ci.yaml"]},
    )  # fmt: skip
    scores, _, _, meta = load_scores(out["scores"], out["index"], out["meta"])
    assert meta["damping"] == 0.1 and meta["damping_record"]["heldout_rows"] == [4, 5, 6, 7]
    np.testing.assert_allclose(scores, 2.0 * truth, rtol=1e-5)
    lds = {r["damping"]: r["lds"] for r in meta["damping_record"]["heldout_lds"]}
    assert lds[0.1] == pytest.approx(1.0) and lds[1.0] == pytest.approx(-1.0)
    assert meta["damping_record"]["whole_loss"]["damping"] == 1.0
    whole = np.load(out["whole_loss"])
    np.testing.assert_allclose(whole, 2.0 * truth.mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="not ekfac_sqnorm|scores of loss"):
        method_scores("ekfac_sqnorm", raws, targets, ["generated"], None, out, influence, {})


def test_method_names_follow_variants_and_output_functions():
    cfg = {"influence": {"methods": ["ekfac", "kfac"]},
           "attribution": {"output_functions": ["loss", "square_norm"]}}  # fmt: skip
    assert influence_methods(cfg) == ["ekfac", "kfac", "ekfac_sqnorm", "kfac_sqnorm"]
    assert parse_influence_method("kfac_sqnorm") == ("kfac", "square_norm")
    assert influence_methods({**cfg, "influence": {"methods": []}}) == []
    only_loss = {**cfg, "influence": {"methods": ["ekfac"], "output_functions": ["loss"]}}
    assert influence_methods(only_loss) == ["ekfac"]
    with pytest.raises(ValueError, match="unknown influence method"):
        parse_influence_method("trak")
