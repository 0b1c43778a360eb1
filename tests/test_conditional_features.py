"""Per-step features of a text-conditioned UNet (the text-to-image family): per-example gradients
under each draw's text states, dense and factored, train and target side, and the ground-truth
f_t, each against a one-example loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stepattr.core.diffusion import Schedule, build_unet, eps_model
from stepattr.core.output_functions import output_value, step_losses, target_draws, train_draws
from stepattr.training.conditioning import CaptionConditioning
from stepattr.trak.factored import FactoredFeaturizer
from stepattr.trak.features import make_featurizer, target_features, train_features
from stepattr.trak.gradients import parameter_names, per_example_gradients, prepare_model

ALPHAS = Schedule().alphas_cumprod
MODEL = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [0],
         "norm_num_groups": 4, "attention_head_dim": 4}  # fmt: skip
SHAPE = (4, 8, 8)  # latent channels x side
FULL = 10**9  # factored budget so large that every factor is exact

pytestmark = pytest.mark.usefixtures("one_thread")


def conditional_unet() -> nn.Module:
    torch.manual_seed(0)
    return prepare_model(build_unet(MODEL, 8, 4, cross_attention_dim=8).double())


def conditioning(dropout: float = 0.3) -> CaptionConditioning:
    """5 texts (row 4 empty) of 3 tokens x 8 dims; example i has captions {i % 4}, and for even
    i also {(i + 1) % 4}."""
    states = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    captions = [[i % 4] + ([(i + 1) % 4] if i % 2 == 0 else []) for i in range(12)]
    return CaptionConditioning(states, captions, empty=4, dropout=dropout, seed=0)


def latents(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(n, *SHAPE, generator=gen, dtype=torch.float64)


def loop_gradients(model, kind, x0, timesteps, noises, states) -> torch.Tensor:
    """Reference: one backward pass per example under its draws' states."""
    params = dict(model.named_parameters())
    rows = []
    for i in range(x0.shape[0]):
        model.zero_grad()
        value = output_value(
            eps_model(model), kind, x0[i : i + 1], timesteps[i : i + 1], noises[i : i + 1],
            ALPHAS, states=states[i : i + 1],
        )  # fmt: skip
        value.sum().backward()
        rows.append(torch.cat([params[n].grad.reshape(-1) for n in parameter_names(model)]))
    return torch.stack(rows)


def test_caption_draws_per_example_are_seeded_own_captions_or_empty():
    cond = conditioning(dropout=0.3)
    draws = cond.draw_states([0, 3, 6], 200, seed=5)
    assert draws.shape == (3, 200, 3, 8)
    torch.testing.assert_close(draws[1:2], cond.draw_states([3], 200, seed=5))  # not by batch
    assert not torch.equal(draws, cond.draw_states([0, 3, 6], 200, seed=6))
    for b, i in enumerate([0, 3, 6]):
        rows = [int(torch.where((cond.states == d).flatten(1).all(1))[0][0]) for d in draws[b]]
        own = {i % 4} | ({(i + 1) % 4} if i % 2 == 0 else set())
        assert set(rows) <= own | {4} and set(rows) & own
        assert 0.15 < np.mean(np.array(rows) == 4) < 0.45  # dropout 0.3
    assert set(map(tuple, cond.draw_states([0], 50, 1)[0, :, 0, :2].tolist())) != {()}


@pytest.mark.parametrize("kind", ["loss", "square_norm"])
def test_conditional_vmap_gradients_equal_one_example_loop(kind):
    model, cond = conditional_unet(), conditioning()
    x0 = latents(3)
    ts, ns = train_draws(0, [4, 9, 2], 2, SHAPE, 1000)
    states = cond.draw_states([4, 9, 2], 2, seed=0)
    want = loop_gradients(model, kind, x0, ts, ns.double(), states)
    got = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double(), None, None, states)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
    passes = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double(), None, 1, states)
    torch.testing.assert_close(passes, want, rtol=1e-10, atol=1e-13)
    # the states matter: the key and value layers of the cross-attention get gradient
    names = parameter_names(model)
    sizes = [p.numel() for p in model.parameters()]
    by_name = dict(zip(names, got.split(sizes, dim=1), strict=True))
    key = next(n for n in names if "attn2.to_k" in n)
    assert by_name[key].abs().sum() > 0
    other = per_example_gradients(model, kind, ALPHAS, x0, ts, ns.double(), None, None, states * 2)
    assert not torch.allclose(other, got)


def test_factored_features_of_a_conditional_unet_equal_its_gradients():
    """Identity factors: the factored blocks are the per-example weight gradients, the
    cross-attention's key and value layers (which read the text states) among them."""
    model, cond = conditional_unet(), conditioning()
    x0 = latents(3)
    ts, ns = train_draws(0, range(3), 2, SHAPE, 1000)
    states = cond.draw_states(range(3), 2, seed=0)
    featurizer = FactoredFeaturizer(model, "loss", ALPHAS, FULL, seed=0)
    assert any("attn2.to_k" in layer for layer in featurizer.plan.layers)
    feats = featurizer(x0, ts, ns.double(), states=states)
    grads = per_example_gradients(model, "loss", ALPHAS, x0, ts, ns.double(), states=states)
    sizes = [p.numel() for p in model.parameters()]
    by_name = dict(zip(parameter_names(model), grads.split(sizes, dim=1), strict=True))
    want = [by_name[f"{layer}.weight"] for layer in featurizer.plan.layers]
    want += [by_name[name] for name in featurizer.plan.small]
    torch.testing.assert_close(feats, torch.cat(want, dim=1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("projector", ["rademacher", "factored"])
def test_train_features_under_captions_equal_a_loop_and_ignore_batching(projector):
    model, cond = conditional_unet(), conditioning()
    x0 = latents(5)
    featurizer = make_featurizer(model, "loss", ALPHAS, projector, 128, seed=3)
    got = train_features(featurizer, x0, list(range(5)), 3, 7, 1000, 2, conditioning=cond)
    for i in range(5):
        ts, ns = train_draws(7, [i], 3, SHAPE, 1000)
        one = featurizer(x0[i : i + 1], ts, ns.double(), states=cond.draw_states([i], 3, 7))
        np.testing.assert_allclose(got[i], one[0].float().numpy(), rtol=1e-5, atol=1e-6)
    shard = train_features(featurizer, x0[3:], [3, 4], 3, 7, 1000, 5, conditioning=cond)
    np.testing.assert_allclose(shard, got[3:], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="encoder_hidden_states"):  # no silent fallback
        train_features(featurizer, x0, list(range(5)), 3, 7, 1000, 2, conditioning=None)


def test_target_features_and_ground_truth_use_each_targets_prompt():
    model = conditional_unet()
    x0hat = latents(6).reshape(3, 2, *SHAPE)
    prompts = conditioning().states[:3]  # target i under text i
    featurizer = make_featurizer(model, "loss", ALPHAS, "rademacher", 16, seed=3)
    grid, ids = [700, 100], [10, 11, 12]
    got = target_features(featurizer, x0hat, ids, grid, 2, 4, batch_size=2, states=prompts)
    f = step_losses(eps_model(model), x0hat, np.array(ids), grid, 2, 4, ALPHAS, 4, prompts)
    for i in range(3):
        for g, step in enumerate(grid):
            ts, ns = target_draws(4, [ids[i]], step, 2, SHAPE)
            s = prompts[i].expand(1, 2, *prompts.shape[1:])
            one = featurizer(x0hat[i : i + 1, g], ts, ns.double(), states=s)
            np.testing.assert_allclose(got[i, g], one[0].float().numpy(), rtol=1e-5, atol=1e-6)
            with torch.no_grad():
                value = output_value(eps_model(model), "loss", x0hat[i : i + 1, g], ts,
                                     ns.double(), ALPHAS, states=s)  # fmt: skip
            assert f[i, g] == pytest.approx(float(value), rel=1e-10)
    swapped = step_losses(eps_model(model), x0hat, np.array(ids), grid, 2, 4, ALPHAS, 4,
                          prompts.flip(0))  # fmt: skip
    assert not np.allclose(swapped, f)
