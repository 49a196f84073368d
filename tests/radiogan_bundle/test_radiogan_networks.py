"""RadioGAN networks: sizes, label conditioning, TorchScript."""

import pytest
import torch
from scripts.networks import RadioGANDiscriminator, RadioGANGenerator


def small_pair(grid=(3, 5), ups=3):
    g = RadioGANGenerator(first_grid=grid, channels=(16, 8, 8)[:ups])
    d = RadioGANDiscriminator(image_size=g.image_size, channels=(4, 4, 8, 8, 8, 8, 8, 8))
    return g, d


@pytest.mark.parametrize("grid,ups", [((3, 5), 3), ((5, 3), 2), ((2, 2), 1)])
def test_output_size_is_grid_times_two_to_the_upsamplings(grid, ups):
    g, d = small_pair(grid, ups)
    z = torch.randn(3, 100)
    labels = torch.tensor([0, 2, 4])
    with torch.no_grad():
        x = g(z, labels)
    assert x.shape == (3, 1, grid[0] * 2**ups, grid[1] * 2**ups)
    assert g.image_size == tuple(x.shape[2:])
    assert float(x.abs().max()) <= 1.0
    assert d(x, labels).shape == (3, 1)


def test_paper_sized_discriminator_reaches_a_valid_map():
    d = RadioGANDiscriminator(image_size=(384, 640), channels=(2,) * 8)
    assert d(torch.zeros(1, 1, 384, 640), torch.tensor([1])).shape == (1, 1)


def test_label_conditioning_changes_both_networks():
    torch.manual_seed(0)
    g, _ = small_pair()
    g.eval()
    z = torch.randn(1, 100).repeat(5, 1)
    labels = torch.arange(5)
    with torch.no_grad():
        x = g(z, labels)
    # untrained DCGAN-initialised weights are small, so the effect is small but far above float noise
    diffs = (x[1:] - x[:1]).abs().flatten(1).amax(dim=1)
    assert bool((diffs > 1e-6).all()), "every class must give a different image for the same z"
    # train-mode BN (dropout off) normalises over the batch: five copies of one image differ only through
    # their labels, so any label dependence is amplified to order one and none would give identical scores
    d = RadioGANDiscriminator(image_size=g.image_size, channels=(4, 4, 8, 8, 8, 8, 8, 8), dropout=0.0).train()
    image = x[:1].repeat(5, 1, 1, 1)
    with torch.no_grad():
        scores = d(image, labels).flatten()
    assert float(scores.max() - scores.min()) > 1e-5, "the discriminator must depend on the label"


def test_same_inputs_same_output_and_bn_momentum_is_keras_0_8():
    g, _ = small_pair()
    g.eval()
    z, labels = torch.randn(2, 100), torch.tensor([1, 3])
    assert torch.equal(g(z, labels), g(z, labels))
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == pytest.approx(0.2) for m in bns)


def test_discriminator_batchnorm_skips_first_and_last_two_blocks():
    d = RadioGANDiscriminator(image_size=(48, 80))
    convs = [i for i, m in enumerate(d.body) if isinstance(m, torch.nn.Conv2d)]
    has_bn = []
    for k, start in enumerate(convs):
        end = convs[k + 1] if k + 1 < len(convs) else len(d.body)
        has_bn.append(any(isinstance(m, torch.nn.BatchNorm2d) for m in list(d.body)[start:end]))
    assert len(convs) == 8
    assert has_bn == [False] + [True] * 5 + [False, False]


def test_torchscript_matches_eager():
    g, d = small_pair()
    g.eval()
    d.eval()
    gs, ds = torch.jit.script(g), torch.jit.script(d)
    z, labels = torch.randn(2, 100), torch.tensor([0, 4])
    x = g(z, labels)
    torch.testing.assert_close(gs(z, labels), x)
    torch.testing.assert_close(gs.forward_embedded(z, gs.embed(labels)), x)
    torch.testing.assert_close(ds(x, labels), d(x, labels))


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_resize_upsampling_draws_no_checkerboard(upsample):
    """A flat feature map through random filters: the transposed convolutions stamp a 2-pixel period on it, the
    resize convolutions keep its inside flat (Odena et al. 2016)."""
    torch.manual_seed(0)
    g = RadioGANGenerator(first_grid=(4, 4), channels=(8, 8), upsample=upsample).eval()
    for m in g.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, 0.0, 0.3)
    with torch.no_grad():
        image = g.body(torch.ones(1, 9, 4, 4))[0, 0, 4:-4, 4:-4]  # 16 x 16 output, away from the borders
    spread = float(image.max() - image.min())
    assert (spread < 1e-5) == (upsample == "resize")


def test_upsampling_choices():
    with pytest.raises(ValueError, match="upsample"):
        RadioGANGenerator(upsample="bilinear")
    assert RadioGANGenerator().body[0].__class__.__name__ == "ConvTranspose2d"  # the paper's, and older records'
