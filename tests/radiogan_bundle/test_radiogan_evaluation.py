"""Latent walks, the judging classifier and conditional accuracy on tiny synthetic inputs with known answers.

(Memorisation and FID are the metric registry's: tests/test_metrics.py.)
"""

import pytest
import torch
from scripts.classifier import (
    ImageClassifier,
    conditional_accuracy,
    predict,
    recalibrate_batchnorm,
    train_classifier,
)
from scripts.latent_walk import (
    axis_walk_latents,
    generate_walk,
    interpolate,
    walk_smoothness,
)
from scripts.networks import RadioGANGenerator

from gan_core.figures import save_strip


def test_axis_walk_is_the_papers_seeds():
    z = axis_walk_latents(100, 10)
    assert z.shape == (10, 100)
    assert z[:, 0].tolist() == [float(k) for k in range(1, 11)]
    assert float(z[:, 1:].abs().sum()) == 0.0


def test_interpolate_includes_both_ends_and_is_linear():
    a, b = torch.zeros(4), torch.full((4,), 9.0)
    path = interpolate(a, b, 10)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    torch.testing.assert_close(path[:, 0], torch.arange(10, dtype=torch.float32))


def test_smoothness_identical_frames_is_one_and_a_jump_lowers_the_minimum():
    torch.manual_seed(0)
    base = torch.rand(1, 1, 32, 32) * 2 - 1
    still = walk_smoothness(base.repeat(4, 1, 1, 1))
    assert abs(still["mean_ssim"] - 1.0) < 1e-5 and len(still["ssim"]) == 3
    other = torch.rand(1, 1, 32, 32) * 2 - 1
    jumpy = walk_smoothness(torch.cat([base, base, other, other]))
    assert jumpy["min_ssim"] < 0.5 < jumpy["max_ssim"]
    assert abs(jumpy["ssim"][1] - jumpy["min_ssim"]) < 1e-9


def test_generate_walk_uses_the_embedding_path(tmp_path):
    torch.manual_seed(0)
    g = RadioGANGenerator(first_grid=(2, 2), channels=(8, 4, 4)).eval()
    z = interpolate(torch.randn(100), torch.randn(100), 5)
    emb = interpolate(g.embed(torch.tensor([0]))[0], g.embed(torch.tensor([3]))[0], 5).detach()
    frames = generate_walk(g, z, emb)
    assert frames.shape == (5, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(frames[-1:], g(z[-1:], torch.tensor([3])))
    png = save_strip(frames, tmp_path / "walk.png", titles=[str(i) for i in range(5)])
    assert png.stat().st_size > 0


@pytest.mark.slow
def test_classifier_learns_two_separable_classes():
    torch.manual_seed(0)
    n = 16
    x = torch.full((n, 1, 16, 16), -1.0)
    labels = torch.arange(n) % 2
    x[labels == 0, :, 2:7, 4:12] = 1.0  # bright blob at the top
    x[labels == 1, :, 9:14, 4:12] = 1.0  # at the bottom
    x = x + 0.1 * torch.randn_like(x)
    model = train_classifier(x, labels, num_classes=2, width=4, epochs=10, batch_size=8, max_shift=1)
    probs, feats = predict(model, x)
    acc = conditional_accuracy(probs, labels, ["top", "bottom"])
    assert acc["mean"] >= 0.9 and set(acc["per_class"]) == {"top", "bottom"}
    assert feats.shape == (n, model.num_features)
    by_steps = train_classifier(x, labels, num_classes=2, width=4, steps=20, batch_size=8, max_shift=1)
    assert conditional_accuracy(predict(by_steps, x)[0], labels, ["top", "bottom"])["mean"] >= 0.9


def test_recalibrated_batchnorm_holds_the_given_images_statistics():
    torch.manual_seed(0)
    model = ImageClassifier(num_classes=2, width=2).train()
    for _ in range(5):  # running statistics of a bright domain
        model(torch.rand(8, 1, 16, 16))
    dark = -1 + 0.1 * torch.rand(6, 1, 16, 16)
    conv, norm = model.body[0], model.body[1]
    weights = [p.clone() for p in model.parameters()]
    recalibrate_batchnorm(model, dark, batches=200, batch_size=6, seed=0)
    with torch.no_grad():
        out = conv(dark)
    assert torch.allclose(norm.running_mean, out.mean(dim=(0, 2, 3)), atol=2e-3)  # the dark images' mean now
    assert torch.allclose(norm.running_var, out.var(dim=(0, 2, 3)), rtol=0.1, atol=1e-4)
    assert not model.training and norm.momentum == 0.1
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_conditional_accuracy_known_answer():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0]])
    acc = conditional_accuracy(probs, torch.tensor([0, 1, 1, 1]), ["a", "b", "c"])
    assert acc["per_class"] == {"a": 1.0, "b": pytest.approx(2 / 3), "c": None}
    assert acc["mean"] == pytest.approx((1 + 2 / 3) / 2) and acc["overall"] == 0.75


def test_conditional_accuracy_interval_resamples_within_classes():
    probs = torch.tensor([[1.0, 0.0]] * 4 + [[1.0, 0.0], [0.0, 1.0]] * 2)  # class 0: 4 of 4; class 1: 2 of 4
    acc = conditional_accuracy(probs, torch.tensor([0] * 4 + [1] * 4), ["a", "b"], num_bootstrap=500, seed=0)
    assert acc["mean"] == 0.75 and acc["per_class"] == {"a": 1.0, "b": 0.5}
    lo, hi = acc["ci95"]
    assert 0.5 <= lo < 0.75 < hi <= 1.0  # class a is always right, so the mean never falls below 0.5
    assert conditional_accuracy(probs, torch.tensor([0] * 4 + [1] * 4), ["a", "b"])["ci95"] is None
