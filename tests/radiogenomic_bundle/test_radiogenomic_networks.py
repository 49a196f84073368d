"""Shapes, value ranges and TorchScript of the radiogenomic generators and discriminator (tiny 32 x 32)."""

import pytest
import torch
from scripts.networks import (
    MCGANGenerator,
    RadiogenomicDiscriminator,
    RadiogenomicGenerator,
    build_generator,
    lung_region,
)

G, S, B = 20, 32, 3


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, S, S, generator=gen) * 2 - 1, torch.randn(B, G, generator=gen), torch.randn(B, 10, generator=gen)


@pytest.mark.parametrize("build, sizes", [
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16), [2, 4, 8, 16, 32, 32]),
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, image_fusion=False), [2, 4, 8, 16, 32]),
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, fusion="features"), [2, 4, 8, 16, 32]),
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, fusion="mask"), [2, 4, 8, 16, 32, 32]),
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, code_gradient=0.1), [2, 4, 8, 16, 32, 32]),
    (lambda: RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, lung_gate=True, psf_sigma=1.5),
     [2, 4, 8, 16, 32, 32]),
    (lambda: MCGANGenerator(G, image_size=S, base_channels=4, hidden=16), [2, 4, 8, 16, 32]),
])
def test_generator_shapes_ranges_and_script(build, sizes):
    net = build().eval()
    background, genes, noise = _inputs()
    image, mask = net(background, genes, noise)
    assert image.shape == mask.shape == (B, 1, S, S)
    assert image.abs().max() <= 1 and mask.abs().max() <= 1
    maps = net.weight_maps(background, genes, noise)
    assert [m.shape[-1] for m in maps] == sizes
    assert all(m.shape[:2] == (B, 1) and m.min() >= 0 and m.max() <= 1 for m in maps)
    assert net.encode_genes(genes).shape == (B, 128)
    scripted = torch.jit.script(net)
    s_image, s_mask = scripted(background, genes, noise)
    torch.testing.assert_close(s_image, image)
    torch.testing.assert_close(s_mask, mask)
    torch.testing.assert_close(scripted.encode_genes(genes), net.encode_genes(genes))


def test_genes_change_the_proposed_output_and_background_passes_through():
    torch.manual_seed(0)
    net = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16).eval()
    background, genes, noise = _inputs()
    image_a, _ = net(background, genes, noise)
    image_b, _ = net(background, genes.flip(0), noise)
    image_c, _ = net(background.flip(-1), genes, noise)
    assert (image_a - image_b).abs().max() > 1e-4  # genes reach the output through AdaIN
    assert (image_a - image_c).abs().max() > 1e-4  # and so does the background


def test_weight_map_fusion_passes_the_background_where_the_weight_is_zero():
    net = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, fusion="weight_map").eval()
    conv = net.out[0]
    with torch.no_grad():  # weight channel: tanh(-100) = -1, so w = 0 at every pixel
        conv.weight[2].zero_()
        conv.bias[2] = -100.0
    background, genes, noise = _inputs()
    image, _ = net(background, genes, noise)
    torch.testing.assert_close(image, background)
    assert net.weight_maps(background, genes, noise)[-1].max() == 0
    with torch.no_grad():  # w = 1: the object image tanh(o) alone
        conv.bias[2] = 100.0
    image, _ = net(background, genes, noise)
    assert (image - background).abs().max() > 0.1


def test_mask_fusion_blends_with_the_generated_mask():
    """The authors' code: out = m o + (1 - m) background with m = (mask + 1) / 2."""
    net = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, fusion="mask").eval()
    conv = net.out[0]
    with torch.no_grad():  # mask channel -1 everywhere: the background passes unchanged
        conv.weight[1].zero_()
        conv.bias[1] = -100.0
    background, genes, noise = _inputs()
    image, mask = net(background, genes, noise)
    torch.testing.assert_close(image, background)
    assert mask.max() == -1 and net.weight_maps(background, genes, noise)[-1].max() == 0
    with torch.no_grad():  # mask +1: the object image alone
        conv.bias[1] = 100.0
    image, _ = net(background, genes, noise)
    out = net.out(net.blocks[-1](*[x for x in _last_block_inputs(net, background, genes, noise)])[0])
    torch.testing.assert_close(image, out[:, :1])


def _lung_and_wall(threshold=-0.5):
    """(1, 1, S, S): lung (-0.9) left of column 20 with a 2-pixel vessel (0.0) across it, chest wall (0.0) right."""
    background = torch.full((1, 1, S, S), -0.9)
    background[..., 20:] = 0.0
    background[..., 10:12, :20] = 0.0
    return background


def test_lung_region_closes_vessels_and_leaves_the_wall_out():
    lung = lung_region(_lung_and_wall(), threshold=-0.5)
    assert lung[..., :, :20].min() == 1  # the vessel inside the lung counts as lung
    assert lung[..., :, 20:].max() == 0  # the chest wall does not


def test_lung_gate_keeps_nodule_and_mask_in_the_lung():
    net = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, lung_gate=True).eval()
    conv = net.out[0]
    with torch.no_grad():  # mask +1 everywhere before the gate, object image +1
        conv.weight.zero_()
        conv.bias[:] = 100.0
    background = _lung_and_wall().expand(B, -1, -1, -1)
    _, genes, noise = _inputs()
    image, mask = net(background, genes, noise)
    assert mask[..., :20].min() == 1 and mask[..., 20:].max() == -1
    # the nodule's edge is blurred by the PSF (radius 2 px); beyond it the chest wall is the background exactly
    torch.testing.assert_close(image[..., 23:], background[..., 23:])
    assert image[..., 2:8, 2:8].min() > 0.9  # the object fills the lung
    ungated = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16).eval()
    ungated.load_state_dict(net.state_dict())
    assert ungated(background, genes, noise)[1][..., 20:].min() == 1  # without the gate the mask covers the wall


def test_psf_fusion_keeps_the_background_where_there_is_no_mask():
    net = RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16).eval()
    conv = net.out[0]
    with torch.no_grad():  # mask -1: the background passes exactly
        conv.weight[1].zero_()
        conv.bias[1] = -100.0
    background, genes, noise = _inputs()
    image, _ = net(background, genes, noise)
    torch.testing.assert_close(image, background)
    with torch.no_grad():  # mask +1: inside, the smoothed object plus the background's own fine texture
        conv.bias[1] = 100.0
    image, _ = net(background, genes, noise)
    out = net.out(net.blocks[-1](*_last_block_inputs(net, background, genes, noise))[0])
    obj = net._blur(out[:, :1], net.object_psf)
    expected = (background + obj - net._blur(background)).clamp(-1, 1)
    torch.testing.assert_close(image, expected)


def _last_block_inputs(net, background, genes, noise):
    features = net.background_encoder(background)
    style = torch.cat([net.encode_genes(genes), noise], dim=1)
    h = net.base(style).view(-1, net.bottleneck_channels, net.code_size, net.code_size)
    for i, block in enumerate(net.blocks[:-1]):
        h, _ = block(h, features[len(features) - 1 - i], style)
    return h, features[0], style


def test_old_records_and_bad_fusions():
    assert RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, image_fusion=True).fusion == "weight_map"
    assert RadiogenomicGenerator(G, image_size=S, base_channels=4, hidden=16, image_fusion="false").fusion == "features"
    with pytest.raises(ValueError, match="fusion"):
        RadiogenomicGenerator(G, image_size=S, fusion="pixels")
    with pytest.raises(ValueError, match="code_gradient"):
        RadiogenomicGenerator(G, image_size=S, code_gradient=1.5)
    with pytest.raises(ValueError, match="psf_sigma"):
        RadiogenomicGenerator(G, image_size=S, psf_sigma=0)
    baseline = build_generator("baseline", num_genes=G, image_size=S, base_channels=4, fusion="mask", code_gradient=0.1)
    assert isinstance(baseline, MCGANGenerator)  # one record serves both: proposed-only settings are ignored


def test_baseline_samples_code_only_in_training():
    net = MCGANGenerator(G, image_size=S, base_channels=4, hidden=16)
    background, genes, noise = _inputs()
    net.train()  # conditioning augmentation: a new code sample per call
    first, _ = net(background, genes, noise)
    second, _ = net(background, genes, noise)
    assert (first - second).abs().max() > 1e-4
    net.eval()  # the mean code: the same inputs give the same image
    first, _ = net(background, genes, noise)
    second, _ = net(background, genes, noise)
    torch.testing.assert_close(first, second)
    mu, log_var = net.gene_stats(genes)
    assert mu.shape == log_var.shape == (B, 128)
    torch.testing.assert_close(net.encode_genes(genes), mu)


def test_discriminator_reads_the_generators_code_or_encodes_genes_itself():
    net = RadiogenomicDiscriminator(G, image_size=S, base_channels=4, code_dim=7).eval()
    assert not net.own_gene_encoder and not any("gene_encoder" in k for k in net.state_dict())
    background, _, _ = _inputs()
    mask = torch.sign(background)
    code = torch.randn(B, 7)
    d_i, d_is, d_isg = net(background, mask, code)
    assert d_isg.shape == (B, 1, 1, 1) and (net(background, mask, code.flip(0))[2] - d_isg).abs().max() > 0
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(background, mask, code)[2], d_isg)


def test_discriminator_heads_and_script():
    net = RadiogenomicDiscriminator(G, image_size=S, base_channels=4, hidden=16, gene_encoder=True).eval()
    background, genes, _ = _inputs()
    mask = torch.sign(background)
    d_i, d_is, d_isg = net(background, mask, genes)
    assert d_i.shape == d_is.shape == d_isg.shape == (B, 1, 1, 1)
    features = net.pair_features(background, mask)
    torch.testing.assert_close(net.gene_logits(features, genes), d_isg)
    # D_ISG depends on the genes, D_IS does not
    assert (net.gene_logits(features, genes.flip(0)) - d_isg).abs().max() > 0
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(background, mask, genes)[2], d_isg)


def test_the_nodule_head_sees_only_the_window_around_the_nodule():
    net = RadiogenomicDiscriminator(G, image_size=S, base_channels=4, code_dim=7, nodule_patch=8).eval()
    image, code = torch.randn(1, 1, S, S), torch.randn(1, 7)
    mask = -torch.ones(1, 1, S, S)
    mask[..., 4:8, 20:24] = 1.0  # a 4 x 4 nodule, centroid (5.5, 21.5) -> window rows 2-9, columns 18-25
    logits = net(image, mask, code)
    assert len(logits) == 4 and logits[3].shape == (1, 1, 1, 1)
    far, near = image.clone(), image.clone()
    far[..., 20:, :10] += 1.0
    near[..., 3, 19] += 1.0
    torch.testing.assert_close(net(far, mask, code)[3], logits[3])
    assert (net(near, mask, code)[3] - logits[3]).abs().item() > 0
    assert len(RadiogenomicDiscriminator(G, image_size=S, base_channels=4, code_dim=7)(image, mask, code)) == 3
    assert len(net(image, mask, code, nodule=False)) == 3
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(image, mask, code)[3], logits[3])
    assert len(scripted(image, mask, code, nodule=False)) == 3
    with pytest.raises(ValueError, match="nodule_patch"):
        RadiogenomicDiscriminator(G, image_size=S, nodule_patch=6)


def test_bad_settings():
    with pytest.raises(ValueError, match="multiple of 16"):
        RadiogenomicGenerator(G, image_size=40)
    with pytest.raises(ValueError, match="model_type"):
        build_generator("stylegan", num_genes=G)
    assert isinstance(build_generator("baseline", num_genes=G, image_size=S, base_channels=4), MCGANGenerator)
