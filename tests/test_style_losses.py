"""Per-segment style / content, total variation, adversarial BCE and mode seeking against hand computations."""

import math

import pytest
import torch

from gan_core.losses import (
    content_distances,
    discriminator_bce,
    downsample_masks,
    generator_bce,
    gram_matrix,
    mode_seeking,
    segment_grams,
    style_distances,
    total_variation,
)
from gan_core.vgg import VGG19Features


def two_by_two(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 2, 2)


def masks(*segments):
    """(1, S, 2, 2) masks from flat lists of 4 zeros/ones."""
    return torch.tensor(segments, dtype=torch.float32).view(1, len(segments), 2, 2)


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).view(1, 2, 1, 3)
    gram, area = gram_matrix(f)
    torch.testing.assert_close(gram[0], torch.tensor([[14.0, -1.0], [-1.0, 2.0]]) / 3)
    assert float(area) == 3.0
    gram, area = gram_matrix(f, torch.tensor([[[1.0, 1.0, 0.0]]]))
    torch.testing.assert_close(gram[0], torch.tensor([[5.0, 2.0], [2.0, 1.0]]) / 2)


def test_style_distance_equals_paper_formula_for_equal_areas():
    # N = 1 channel, segment area M = 2 in both images: paper's 1 / (4 N^2 M^2) ||G_r - G_s||^2 on raw Grams.
    r, s = two_by_two([1, 2, 3, 4]), two_by_two([2, 0, 1, 1])
    m_r = masks([1, 1, 0, 0], [0, 0, 1, 1])
    m_s = masks([0, 1, 1, 0], [1, 0, 0, 1])
    d = style_distances(segment_grams({"l": r}, m_r, ["l"]), segment_grams({"l": s}, m_s, ["l"]))
    # seg 0: G_r = 1 + 4 = 5, G_s = 0 + 1 = 1 -> 16 / 16; seg 1: G_r = 9 + 16 = 25, G_s = 4 + 1 = 5 -> 400 / 16.
    torch.testing.assert_close(d, torch.tensor([[1.0, 25.0]]))


def test_style_distance_sums_layers_and_downsamples_masks():
    r4 = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    m4 = torch.zeros(1, 1, 4, 4)
    m4[..., :2, :] = 1.0  # top half -> 2x2 mask [[1, 1], [0, 0]]
    torch.testing.assert_close(downsample_masks(m4, (2, 2)), masks([1, 1, 0, 0]))
    feats = {"fine": r4, "coarse": two_by_two([1, 2, 3, 4])}
    grams_r = segment_grams(feats, m4, ["fine", "coarse"])
    zeros = {"fine": torch.zeros(1, 1, 4, 4), "coarse": torch.zeros(1, 1, 2, 2)}
    grams_s = segment_grams(zeros, torch.ones(1, 1, 4, 4), ["fine", "coarse"])
    fine = (sum(v * v for v in range(8)) / 8) ** 2 / 4  # mean of squares over the top half, squared, / 4
    coarse = ((1 + 4) / 2) ** 2 / 4
    torch.testing.assert_close(style_distances(grams_r, grams_s), torch.tensor([[fine + coarse]]))


def test_absent_segment_contributes_zero_not_nan():
    r = two_by_two([1, 2, 3, 4]).requires_grad_(True)
    s = two_by_two([2, 0, 1, 1])
    m_r = masks([1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0])  # segments 1 and 2 absent from the generated map
    m_s = masks([1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0])  # segment 2 absent from the style image too
    d = style_distances(segment_grams({"l": r}, m_r, ["l"]), segment_grams({"l": s}, m_s, ["l"]))
    assert torch.isfinite(d).all()
    assert d[0, 1] == 0 and d[0, 2] == 0 and d[0, 0] > 0
    d.sum().backward()
    assert torch.isfinite(r.grad).all()
    c = content_distances({"l": r}, {"l": s}, m_r, ["l"])
    assert torch.isfinite(c).all() and c[0, 1] == 0 and c[0, 2] == 0


def test_absent_segment_through_vgg_is_finite():
    with pytest.warns(UserWarning):
        vgg = VGG19Features(layers=("relu1_1", "relu2_1"))
    x = (torch.rand(1, 1, 8, 8) * 2 - 1).requires_grad_(True)
    m = torch.zeros(1, 6, 8, 8)
    m[:, 0] = 1.0  # only the first segment present
    layers = ["relu1_1", "relu2_1"]
    style_grams = segment_grams(vgg(torch.zeros(1, 1, 8, 8)), torch.ones(1, 6, 8, 8) / 6, layers)
    d = style_distances(segment_grams(vgg(x), m, layers), style_grams)
    assert torch.isfinite(d).all() and (d[0, 1:] == 0).all()
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_content_distance_by_hand():
    r, o = two_by_two([1, 2, 3, 4]), two_by_two([0, 2, 3, 0])
    m = masks([1, 1, 0, 0], [0, 0, 1, 1])
    d = content_distances({"l": r}, {"l": o}, m, ["l"])
    # 1 / (2 N M) with N = 1, M = 4 positions: seg 0 diff (1, 0) -> 1/8; seg 1 diff (0, 4) -> 16/8.
    torch.testing.assert_close(d, torch.tensor([[0.125, 2.0]]))
    # Binary masks partitioning the image: the sum is the whole-image content loss.
    torch.testing.assert_close(d.sum(), ((r - o) ** 2).sum() / 8)


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # vertical (3-0)^2 + (5-1)^2 = 25, horizontal (1-0)^2 + (5-3)^2 = 5
    torch.testing.assert_close(total_variation(x), torch.tensor([30.0]))
    assert float(total_variation(torch.full((2, 1, 4, 4), 0.3)).abs().sum()) == 0.0


def test_adversarial_bce_by_hand():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    sig = torch.sigmoid
    want_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    torch.testing.assert_close(discriminator_bce(real, fake), want_d)
    torch.testing.assert_close(generator_bce(fake), -torch.log(sig(fake)).mean())
    assert math.isclose(float(generator_bce(torch.zeros(3))), math.log(2), rel_tol=1e-6)
    assert float(discriminator_bce(torch.tensor([-200.0]), torch.tensor([200.0]))) == pytest.approx(400.0)


def test_mode_seeking_by_hand():
    a = torch.stack([two_by_two([0, 1, 2, 3])[0], two_by_two([5, 5, 5, 5])[0]])
    b = torch.stack([two_by_two([1, 1, 0, 3])[0], two_by_two([5, 5, 5, 5])[0]]).requires_grad_(True)
    z_a, z_b = torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, -2.0], [0.0, 1.0]])
    # image 0: mean|a - b| = (1 + 0 + 2 + 0) / 4 = 0.75, mean|z_a - z_b| = (1 + 2) / 2 = 1.5 -> 1 / 0.5 = 2;
    # image 1: equal images -> 1 / eps, large but finite.
    torch.testing.assert_close(mode_seeking(a, b, z_a, z_b, eps=0.0)[0], torch.tensor(2.0))
    d = mode_seeking(a, b, z_a, z_b, eps=1e-5)
    torch.testing.assert_close(d, torch.tensor([1 / (0.5 + 1e-5), 1e5]))
    # Moving b away from a lowers the term: the gradient on b points towards a, so descent pushes b away.
    d[0].backward()
    assert b.grad[0, 0, 0, 0] < 0 and b.grad[0, 0, 1, 0] > 0
