"""The workflow's CNN classifier: learning, I/O, API shapes, augmentation (tiny, seconds)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stepattr.core.images import to_model_space
from stepattr.detectors.classifier import (
    ClassifierSettings,
    ConvClassifier,
    architecture,
    embed,
    load_classifier,
    predict_proba,
    random_shift,
    train_and_save_classifier,
    train_classifier,
)

TINY = ClassifierSettings.from_config({
    "epochs": 4,
    "batch_size": 32,
    "lr": 0.01,
    "weight_decay": 0.0,
    "channels": [4],
    "embed_dim": 8,
    "dropout": 0.0,
    "max_shift": 1,
    "threads": 1,
    "seed": 0,
})  # fmt: skip


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 1, 8, 8) images: class 0 a bright vertical bar, class 1 a horizontal one."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, 1, 8, 8))
    pos = rng.integers(2, 6, n)
    for i in range(n):
        if labels[i] == 0:
            images[i, 0, :, pos[i]] = 255
        else:
            images[i, 0, pos[i], :] = 255
    return images.astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    x_train, y_train = bars(256, 0)
    x_test, y_test = bars(64, 1)
    return train_classifier(x_train, y_train, x_test, y_test, ["vertical", "horizontal"], TINY)


def test_learns_a_separable_task(trained):
    _, metrics = trained
    assert metrics["test_accuracy"] >= 0.95
    assert set(metrics["per_class_accuracy"]) == {"vertical", "horizontal"}
    assert metrics["epochs"] == 4 and metrics["seed"] == 0
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]


def test_same_seed_same_weights():
    x, y = bars(64, 2)
    cfg = replace(TINY, epochs=1)
    a, _ = train_classifier(x, y, x, y, ["v", "h"], cfg)
    b, _ = train_classifier(x, y, x, y, ["v", "h"], cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_api_shapes_and_round_trip(trained, tmp_path):
    model, _ = trained
    x, _ = bars(10, 3)
    images = to_model_space(x)
    proba = predict_proba(model, images)
    assert proba.shape == (10, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    emb = embed(model, images.numpy())
    assert emb.shape == (10, TINY.embed_dim) and (emb >= 0).all()  # after ReLU
    # the head applied to the embedding gives the probabilities: embed is the penultimate layer
    head = F.softmax(model.head(torch.from_numpy(emb)), dim=1).detach().numpy()
    np.testing.assert_allclose(head, proba, atol=1e-5)
    from stepattr.detectors.classifier import save_classifier

    save_classifier(tmp_path, model, architecture(TINY, 1, 8, 2))
    loaded = load_classifier(tmp_path)
    assert loaded.class_names == ["vertical", "horizontal"]
    np.testing.assert_array_equal(predict_proba(loaded, images), proba)
    assert predict_proba(loaded, images[:0]).shape == (0, 2)


def test_bad_inputs_are_named(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        predict_proba(model, torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvClassifier(1, 6, 2, channels=[4, 4])
    with pytest.raises(ValueError, match="outside the 2 class names"):
        x, y = bars(8, 4)
        train_classifier(x, y + 1, x, y, ["v", "h"], TINY)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json"):
        load_classifier(tmp_path)


def test_corrupt_weights_named(trained, tmp_path):
    from stepattr.detectors.classifier import save_classifier

    model, _ = trained
    save_classifier(tmp_path, model, architecture(TINY, 1, 8, 2))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_classifier(tmp_path)


def test_random_shift_is_a_translation():
    """Each output equals one of the (2s+1)^2 edge-replicated translations (brute force)."""
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    s = 2
    out = random_shift(x, s, torch.Generator().manual_seed(0))
    padded = F.pad(x, (s,) * 4, mode="replicate")
    for i in range(len(x)):
        candidates = [
            padded[i, :, dy : dy + 5, dx : dx + 5]
            for dy in range(2 * s + 1)
            for dx in range(2 * s + 1)
        ]
        assert any(torch.equal(out[i], c) for c in candidates)
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_train_and_save_writes_the_contract(tmp_path):
    x_train, y_train = bars(64, 5)
    x_test, y_test = bars(16, 6)
    names = np.array(["vertical", "horizontal"])
    np.savez(tmp_path / "train.npz", images=x_train, labels=y_train, class_names=names)
    np.savez(tmp_path / "test.npz", images=x_test, labels=y_test, class_names=names)
    out = tmp_path / "classifier"
    metrics = train_and_save_classifier(
        tmp_path / "train.npz", tmp_path / "test.npz", out, replace(TINY, epochs=1)
    )
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "metrics.json"}
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["n_test"] == 16
    assert load_classifier(out).class_names == ["vertical", "horizontal"]
