"""Every term of the radiogenomic GAN loss against a hand computation on tiny tensors."""

import math

import pytest
import torch
from scripts.losses import (
    RadiogenomicGANLoss,
    appearance_term,
    boundary_length,
    consistency_term,
    eroded_background,
    interior_spread,
    kl_divergence,
    mismatched,
    mismatched_index,
    soft_nodule_stats,
)
from scripts.networks import RadiogenomicDiscriminator, RadiogenomicGenerator


class ArithmeticDiscriminator:
    """Heads with outputs one can compute by hand: D_I = mean(x), D_IS = mean(x) - mean(m), D_ISG = mean(m) + mean(g)."""

    def image_logits(self, image):
        return image.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)

    def pair_features(self, image, mask):
        return torch.cat([image, mask], dim=1)

    def pair_logits(self, features):
        return features[:, :1].mean(dim=(2, 3), keepdim=True) - features[:, 1:].mean(dim=(2, 3), keepdim=True)

    def gene_logits(self, features, genes):
        return features[:, 1:].mean(dim=(2, 3), keepdim=True) + genes.mean(dim=1).view(-1, 1, 1, 1)

    def __call__(self, image, mask, genes, nodule=True):
        features = self.pair_features(image, mask)
        return self.image_logits(image), self.pair_logits(features), self.gene_logits(features, genes)


class LocalArithmeticDiscriminator(ArithmeticDiscriminator):
    """The same three heads and a D_N = the window's mean image (the window of a constant image is the constant);
    counts the calls that ran D_N."""

    def __init__(self):
        self.nodule_calls = 0

    def __call__(self, image, mask, genes, nodule=True):
        heads = list(super().__call__(image, mask, genes))
        if nodule:
            self.nodule_calls += 1
            heads.append(image.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1))
        return heads


def _const(values, size=4):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()


# batch of two subjects: x = (0.5, -0.5), m = (1, -1), mean(g) = (2, 0); fakes G_x = (0.25, 0), G_m = (0.5, 0.5)
IMAGE, MASK = _const([0.5, -0.5]), _const([1.0, -1.0])
GENES = torch.tensor([[2.0, 2.0], [0.0, 0.0]])
FAKE_IMAGE, FAKE_MASK = _const([0.25, 0.0]), _const([0.5, 0.5])


def test_mismatched_is_another_subject():
    torch.testing.assert_close(mismatched(GENES), torch.tensor([[0.0, 0.0], [2.0, 2.0]]))


def test_discriminator_terms_by_hand():
    terms = RadiogenomicGANLoss().discriminator_terms(ArithmeticDiscriminator(), IMAGE, MASK, GENES, FAKE_IMAGE, FAKE_MASK)
    with_patients = RadiogenomicGANLoss().discriminator_terms(ArithmeticDiscriminator(), IMAGE, MASK, GENES, FAKE_IMAGE,
                                                              FAKE_MASK, patients=torch.tensor([3, 7]))
    assert {k: v.item() for k, v in with_patients.items()} == {k: v.item() for k, v in terms.items()}  # 2 patients
    # L_DI: D_I(x) = (0.5, -0.5) -> ((-0.5)^2 + (-1.5)^2) / 2 = 1.25; D_I(G_x) = (0.25, 0) -> 0.0625 / 2
    assert terms["d_i"].item() == pytest.approx(1.25 + 0.03125)
    # L_DIS: D_IS(x, m) = (-0.5, 0.5) -> 1.25; m_bar = (-1, 1): D_IS(x, m_bar) = (1.5, -1.5) -> 2.25;
    # D_IS(G_x, G_m) = (-0.25, -0.5) -> (0.0625 + 0.25) / 2
    assert terms["d_is"].item() == pytest.approx(1.25 + 2.25 + 0.15625)
    # L_DISG: (x, m, g) = (3, -1) -> 4; (x, m_bar, g) = (1, 1) -> 1; (x, m, g_bar) = (1 + 0, -1 + 2) -> 1;
    # (G_x, G_m, g) = (2.5, 0.5) -> (6.25 + 0.25) / 2
    assert terms["d_isg"].item() == pytest.approx(4 + 1 + 1 + 3.25)
    assert terms["d_total"].item() == pytest.approx(8 * 1.28125 + 1 * 3.65625 + 10 * 9.25)


def test_generator_adversarial_terms_by_hand():
    loss = RadiogenomicGANLoss(weight_i=2.0, weight_is=3.0, weight_isg=5.0, lambda_background=7.0)
    terms = loss.generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK)
    assert terms["g_i"].item() == pytest.approx((0.75**2 + 1.0) / 2)  # D_I(G_x) - 1 = (-0.75, -1)
    assert terms["g_is"].item() == pytest.approx((1.25**2 + 1.5**2) / 2)  # D_IS(G_x, G_m) - 1 = (-1.25, -1.5)
    assert terms["g_isg"].item() == pytest.approx((1.5**2 + 0.5**2) / 2)  # D_ISG - 1 = (1.5, -0.5)
    assert terms["g_background_l1"].item() == 0.0  # G_m > 0 everywhere: no background region
    assert "g_kl" not in terms
    assert terms["g_total"].item() == pytest.approx(2 * 0.78125 + 3 * 1.90625 + 5 * 1.25)


def test_background_l1_on_eroded_inverse_mask():
    fake_mask = -torch.ones(1, 1, 7, 7)
    fake_mask[0, 0, 3, 3] = 1.0  # one nodule pixel in the centre
    region = eroded_background(fake_mask, erosion=3)
    assert region.sum().item() == 49 - 9  # the 3 x 3 block around the nodule leaves the background
    assert region[0, 0, 0, 0] == 1 and region[0, 0, 2, 2] == 0 and region[0, 0, 1, 1] == 1
    assert eroded_background(-torch.ones(1, 1, 7, 7), erosion=5).sum().item() == 49  # border does not erode
    fake_image = torch.full((1, 1, 7, 7), 0.5)
    fake_image[0, 0, 0, :] = -0.5  # first row differs from the background by 1.5
    background = -torch.ones(1, 1, 7, 7)
    terms = RadiogenomicGANLoss(lambda_background=100.0, erosion=3).generator_terms(
        ArithmeticDiscriminator(), background, torch.zeros(1, 2), fake_image, fake_mask
    )
    expected_l1 = (7 * 0.5 + 33 * 1.5) / 49  # 40 background pixels: 7 in row 0 (|-0.5 + 1|), 33 others (|0.5 + 1|)
    assert terms["g_background_l1"].item() == pytest.approx(expected_l1)
    adversarial = 8 * terms["g_i"] + terms["g_is"] + 10 * terms["g_isg"]
    assert terms["g_total"].item() == pytest.approx(adversarial.item() + 100 * expected_l1)


def test_nodule_head_terms_by_hand_and_only_with_a_nodule_head():
    loss = RadiogenomicGANLoss(weight_nodule=3.0)
    plain = loss.discriminator_terms(ArithmeticDiscriminator(), IMAGE, MASK, GENES, FAKE_IMAGE, FAKE_MASK)
    local_discriminator = LocalArithmeticDiscriminator()
    local = loss.discriminator_terms(local_discriminator, IMAGE, MASK, GENES, FAKE_IMAGE, FAKE_MASK)
    assert "d_n" not in plain
    assert local_discriminator.nodule_calls == 2  # real and fake; the two mismatched pairs skip D_N
    # L_DN: D_N(x, m) = (0.5, -0.5) -> ((-0.5)^2 + (-1.5)^2) / 2 = 1.25; D_N(G_x, G_m) = (0.25, 0) -> 0.0625 / 2
    assert local["d_n"].item() == pytest.approx(1.28125)
    assert local["d_total"].item() == pytest.approx(plain["d_total"].item() + 3.0 * 1.28125)
    g_plain = loss.generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK)
    g_local = loss.generator_terms(LocalArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK)
    assert "g_n" not in g_plain
    assert g_local["g_n"].item() == pytest.approx((0.75**2 + 1.0) / 2)  # D_N(G_x, G_m) - 1 = (-0.75, -1)
    assert g_local["g_total"].item() == pytest.approx(g_plain["g_total"].item() + 3.0 * 0.78125)


def test_kl_term_by_hand():
    mu, log_var = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    expected = 1.0 - 0.5 * math.log(2.0)  # -0.5 * [(1 + 0 - 1 - 1) + (1 + log 2 - 0 - 2)]
    assert kl_divergence(mu, log_var).item() == pytest.approx(expected)
    terms = RadiogenomicGANLoss(weight_kl=2.0).generator_terms(
        ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK, kl=kl_divergence(mu, log_var)
    )
    assert terms["g_kl"].item() == pytest.approx(expected)
    assert terms["g_total"].item() == pytest.approx(8 * 0.78125 + 1.90625 + 10 * 1.25 + 2 * expected)


def test_terms_with_the_real_discriminator_train_only_their_side():
    torch.manual_seed(0)
    disc = RadiogenomicDiscriminator(num_genes=2, image_size=16, base_channels=4, code_dim=2, hidden=8)
    fake_image = _const([0.25, 0.0], 16).requires_grad_(True)
    d_terms = RadiogenomicGANLoss().discriminator_terms(
        disc, _const([0.5, -0.5], 16), _const([1.0, -1.0], 16), GENES, fake_image.detach(), _const([0.5, 0.5], 16)
    )
    d_terms["d_total"].backward()
    assert all(p.grad is not None for p in disc.parameters())
    g_terms = RadiogenomicGANLoss().generator_terms(disc, _const([0.5, -0.5], 16), GENES, fake_image, _const([-0.5, 0.5], 16))
    g_terms["g_total"].backward()
    assert fake_image.grad is not None and fake_image.grad.abs().sum() > 0


def test_mismatched_pairs_come_from_another_patient():
    # patients 0, 0, 1, 2: sample 0 skips sample 1 (same patient) and takes sample 2; sample 3 wraps to sample 0
    assert mismatched_index(torch.tensor([0, 0, 1, 2]), 4).tolist() == [2, 2, 3, 0]
    # one patient only: no other patient exists, the batch is rolled by one (the old rule)
    assert mismatched_index(torch.tensor([5, 5, 5]), 3).tolist() == [2, 0, 1]
    assert mismatched_index(None, 3).tolist() == [2, 0, 1]
    x = torch.tensor([[10.0], [11.0], [12.0], [13.0]])
    assert mismatched(x, mismatched_index(torch.tensor([0, 0, 1, 2]), 4)).flatten().tolist() == [12.0, 12.0, 13.0, 10.0]
    # the discriminator's mismatched genes follow the patients: samples 0 and 1 (patient 0) both get sample 2's
    terms = RadiogenomicGANLoss(weight_i=0.0, weight_is=0.0).discriminator_terms(
        ArithmeticDiscriminator(), _const([0.0] * 4), _const([0.0] * 4), torch.tensor([[0.0], [0.0], [1.0], [2.0]]),
        _const([0.0] * 4), _const([0.0] * 4), patients=torch.tensor([0, 0, 1, 2]))
    # D_ISG = mean(m) + mean(g) = g; real 0, 0, 1, 2 -> (1 + 1 + 0 + 1) / 4; wrong mask same 0.75 (m = 0 -> g^2:
    # (0 + 0 + 1 + 4) / 4); wrong genes g_bar = 1, 1, 2, 0 -> (1 + 1 + 4 + 0) / 4; fake -> (0 + 0 + 1 + 4) / 4
    assert terms["d_isg"].item() == pytest.approx(0.75 + 1.25 + 1.5 + 1.25)


def test_soft_nodule_stats_by_hand():
    image = -torch.ones(1, 1, 4, 4)
    mask = -torch.ones(1, 1, 4, 4)
    image[0, 0, :2, :2] = 0.5
    mask[0, 0, :2, :2] = 1.0  # 4 nodule pixels of intensity 0.5
    mask[0, 0, 3, 3] = 0.0  # one half-weight pixel of intensity -1
    diameter, mean, spread = soft_nodule_stats(image, mask)
    assert diameter.item() == pytest.approx(2 * math.sqrt(4.5 / math.pi), rel=1e-5)
    mu = (4 * 0.5 - 0.5) / 4.5
    assert mean.item() == pytest.approx(mu)
    assert spread.item() == pytest.approx(math.sqrt((4 * (0.5 - mu) ** 2 + 0.5 * (-1 - mu) ** 2) / 4.5), rel=1e-5)


def test_consistency_term_by_hand():
    fake_image, fake_mask = -torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8)
    image, mask = -torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8)
    fake_mask[:, :, :2, :2], fake_image[:, :, :2, :2] = 1.0, 0.5  # generated: 4 px at 0.5
    fake_image[:, :, 0, 0] = 0.9  # ... one of them at 0.9: mean 0.6, sd sqrt(3 * 0.01 + 0.09) / 2 = 0.1732
    mask[:, :, :3, :3], image[:, :, :3, :3] = 1.0, 0.0  # real: 9 px at 0, spread 0
    fake_image.requires_grad_(True)
    size, density, spread, boundary, interior = consistency_term(fake_image, fake_mask, image, mask)
    assert size.item() == pytest.approx(abs(2 * math.sqrt(4 / math.pi) - 2 * math.sqrt(9 / math.pi)) / 8, rel=1e-5)
    assert density.item() == pytest.approx(0.3)
    assert spread.item() == pytest.approx((math.sqrt(0.12 / 4) - 1e-4) / 2, rel=1e-4)  # real: sqrt(0 + 1e-8)
    assert boundary.item() == pytest.approx(abs(8 - 12) / (4 * 8))  # a 2 x 2 square has 8 pixel edges, 3 x 3 has 12
    # interiors (2 px in from the edge): none left of the 2 x 2 square, one flat pixel of the 3 x 3: both sd ~0
    assert interior.item() == pytest.approx(0.0, abs=1e-6)
    density.backward()
    assert fake_image.grad[0, 0, 0, 0] > 0 and fake_image.grad[0, 0, 5, 5] == 0  # only nodule pixels are pulled


def test_boundary_length_counts_pixel_edges_and_soft_edges_by_their_height():
    square = -torch.ones(1, 1, 8, 8)
    square[..., 2:5, 2:5] = 1.0  # 3 x 3: 12 edges
    corner = -torch.ones(1, 1, 8, 8)
    corner[..., :2, :2] = 1.0  # at the image border the outside counts as background: 8 edges
    ramp = -torch.ones(1, 1, 8, 8)
    ramp[..., :, 4:] = 1.0
    ramp[..., :, 3] = 0.0  # a soft step 0 -> 0.5 -> 1 varies by 1 along each of the 8 rows, like a sharp one
    speckle = -torch.ones(1, 1, 8, 8)
    speckle[..., 1::3, 1::3] = 1.0  # 9 single pixels: 9 x 4 edges
    lengths = boundary_length(torch.cat([square, corner, ramp, speckle]))
    # ramp: 8 rows x (step 1 + 1 at the right border) + the border above and below each column (2 x 4.5)
    assert lengths.tolist() == pytest.approx([12.0, 8.0, 8 * 2 + 2 * 4.5, 36.0])


def test_interior_spread_ignores_the_edge_and_sees_blotches():
    mask = -torch.ones(2, 1, 8, 8)
    mask[..., 1:7, 1:7] = 1.0  # 6 x 6 nodule: 2 px in from its edge, the 2 x 2 interior rows / columns 3-4
    image = -torch.ones(2, 1, 8, 8)
    image[..., 1:7, 1:7] = 0.8  # a bright rim ...
    image[..., 2:6, 2:6] = 0.2  # ... around a flat inside: the edge does not count
    image[1, 0, 3, 3] = 0.6  # one blotch in the second image: inside 0.6, 0.2, 0.2, 0.2
    spread = interior_spread(image, mask)
    assert spread[0].item() == pytest.approx(1e-4)  # sqrt(0 + 1e-8)
    assert spread[1].item() == pytest.approx(math.sqrt((0.3**2 + 3 * 0.1**2) / 4), rel=1e-4)
    assert interior_spread(image, -torch.ones(2, 1, 8, 8)).tolist() == pytest.approx([1e-4, 1e-4])  # no nodule: ~0


def test_appearance_term_by_hand():
    code = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert appearance_term(code, target).item() == pytest.approx((0 + 4 + 1 + 1) / 4)  # the first 2 coordinates
    with pytest.raises(ValueError, match="fewer than the 3"):
        appearance_term(code[:, :2], torch.zeros(2, 3))


def test_generator_total_adds_the_weighted_appearance_and_consistency_terms():
    loss = RadiogenomicGANLoss(weight_appearance=3.0, weight_consistency=5.0)
    code, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    terms = loss.generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK, code=code,
                                 appearance=target, image=IMAGE, mask=MASK)
    assert terms["g_appearance"].item() == pytest.approx(1.5)
    # generated masks 0.5 everywhere: w = 0.75 over 16 px -> area 12; real: 16 px then 0 px (area clamped to 1)
    d12, d16, d0 = (2 * math.sqrt((a + 1e-6) / math.pi) for a in (12, 16, 0))
    assert terms["g_consistency_size"].item() == pytest.approx((abs(d12 - d16) + abs(d12 - d0)) / 2 / 4, rel=1e-5)
    assert terms["g_consistency_density"].item() == pytest.approx((abs(0.25 - 0.5) + abs(0.0 - 0.0)) / 2 / 2)
    assert terms["g_consistency_spread"].item() == pytest.approx(0.0, abs=1e-4)  # constant images: no spread
    # outlines: generated w = 0.75 on a 4 x 4 image -> 0.75 x 16 border edges = 12; real 16, then 0
    assert terms["g_consistency_boundary"].item() == pytest.approx((abs(12 - 16) + abs(12 - 0)) / 2 / 16)
    assert terms["g_consistency_interior"].item() == pytest.approx(0.0, abs=1e-6)  # constant images are flat inside
    adversarial = 8 * terms["g_i"] + terms["g_is"] + 10 * terms["g_isg"] + 100 * terms["g_background_l1"]
    expected = adversarial + 3 * 1.5 + 5 * (terms["g_consistency_size"] + terms["g_consistency_density"]
                                            + terms["g_consistency_spread"] + terms["g_consistency_boundary"]
                                            + terms["g_consistency_interior"])
    assert terms["g_total"].item() == pytest.approx(expected.item())
    paper = RadiogenomicGANLoss().generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK,
                                                  code=code, appearance=target, image=IMAGE, mask=MASK)
    assert paper["g_total"].item() == pytest.approx(adversarial.item())  # weights 0: the paper's objective


def test_mode_seeking_term_by_hand_and_only_with_a_second_image():
    loss = RadiogenomicGANLoss(weight_mode_seeking=2.0)
    base = loss.generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK)
    assert "g_mode_seeking" not in base
    noise = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # second image 0.5 brighter, second noise 2 further: 1 / (0.5 / 2 + 1e-5) for each sample
    terms = loss.generator_terms(ArithmeticDiscriminator(), IMAGE, GENES, FAKE_IMAGE, FAKE_MASK,
                                 second=(noise, FAKE_IMAGE + 0.5, noise + 2.0))
    assert terms["g_mode_seeking"].item() == pytest.approx(1.0 / (0.25 + 1e-5))
    assert terms["g_total"].item() == pytest.approx(base["g_total"].item() + 2.0 * terms["g_mode_seeking"].item())


class NoisyGenerator(torch.nn.Module):
    """image = background + mean(noise) (so each noise draw gives another image), mask = -1; counts its calls."""

    noise_dim = 3

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, background, genes, noise):
        self.calls += 1
        return background + noise.mean(dim=1).view(-1, 1, 1, 1), -torch.ones_like(background)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_trainer_makes_a_second_image_only_for_the_mode_seeking_term(weight):
    from scripts.trainer import RadiogenomicTrainer

    trainer = RadiogenomicTrainer.__new__(RadiogenomicTrainer)
    trainer.generator, trainer.discriminator = NoisyGenerator(), ArithmeticDiscriminator()
    trainer.loss, trainer.slice_noise = RadiogenomicGANLoss(weight_mode_seeking=weight), False
    batch = {"image": IMAGE, "mask": MASK, "genes": GENES, "background": torch.zeros(2, 1, 4, 4)}
    torch.manual_seed(0)
    fake = trainer.generate(batch)
    terms = trainer.generator_terms(batch, fake)
    assert trainer.generator.calls == (2 if weight > 0 else 1)
    assert ("g_mode_seeking" in terms) == (weight > 0) and ("image_2" in fake) == (weight > 0)
    if weight > 0:
        torch.manual_seed(0)
        first, second = torch.randn(2, 3), torch.randn(2, 3)  # the two draws, in order
        torch.testing.assert_close(fake["noise"], first)
        torch.testing.assert_close(fake["noise_2"], second)
        expected = 1.0 / ((first.mean(1) - second.mean(1)).abs() / (first - second).abs().mean(1) + 1e-5)
        assert terms["g_mode_seeking"].item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_code_gradient_scales_only_the_gradient():
    torch.manual_seed(0)
    net = RadiogenomicGenerator(5, image_size=16, base_channels=2, code_dim=3, hidden=4, code_gradient=0.25)
    genes = torch.randn(2, 5)
    torch.testing.assert_close(net.training_code(genes), net.encode_genes(genes))
    net.training_code(genes).sum().backward()
    scaled = net.gene_encoder.net[0].weight.grad.clone()
    net.zero_grad()
    net.encode_genes(genes).sum().backward()
    torch.testing.assert_close(scaled, 0.25 * net.gene_encoder.net[0].weight.grad)
