"""RadioGAN trainer on synthetic tensors: loss terms, gradient flow to both networks, per-class sample grid."""

import pytest
import torch
from scripts.networks import RadioGANDiscriminator, RadioGANGenerator
from scripts.trainer import RadioGANTrainer
from torch.utils.data import DataLoader

from gan_core.engines.handlers import SampleGridSaver

CLASSES = ["normal", "head_neck", "oesophagus", "lung", "lymphoma"]


class Blobs(torch.utils.data.Dataset):
    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.full((1, 12, 20), -1.0)
        image[:, :, 4 * (i % 5) : 4 * (i % 5) + 4] = 1.0
        return {"image": image, "label": i % 5, "patient_id": f"P{i}"}


@pytest.mark.slow
def test_two_iterations_update_both_networks_and_write_a_per_class_grid(tmp_path):
    torch.manual_seed(0)
    g = RadioGANGenerator(first_grid=(3, 5), channels=(8, 4))
    d = RadioGANDiscriminator(image_size=(12, 20), channels=(4,) * 8)
    g0 = [p.detach().clone() for p in g.parameters()]
    d0 = [p.detach().clone() for p in d.parameters()]
    trainer = RadioGANTrainer(
        "cpu", 1, DataLoader(Blobs(), batch_size=5), g, d,
        torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)),
        torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
        class_names=CLASSES,
    )
    SampleGridSaver(str(tmp_path), num_samples=2).attach(trainer)
    columns = []
    original = trainer.sample_columns
    trainer.sample_columns = lambda b, f: columns.extend(original(b, f)) or columns
    trainer.run()
    assert trainer.state.iteration == 2
    losses = trainer.state.output[0]["loss"]
    assert set(losses) == {"d_real", "d_fake", "d_total", "d_acc", "g_adv", "g_total"}
    assert abs(losses["d_total"] - 0.5 * (losses["d_real"] + losses["d_fake"])) < 1e-6
    assert 0.0 <= losses["d_acc"] <= 1.0
    # the generator's label path and the discriminator's label path both received gradients and moved
    assert not torch.equal(g.embedding.weight, g0[[n for n, _ in g.named_parameters()].index("embedding.weight")])
    assert any(not torch.equal(a, b) for a, b in zip(d.parameters(), d0, strict=True))
    assert [name for name, _ in columns] == ["real"] + CLASSES
    assert all(t.shape == (2, 1, 12, 20) for _, t in columns)
    assert (tmp_path / "samples" / "epoch_0001.png").stat().st_size > 1000


class Recording(torch.nn.Module):
    """An augmentation that records what it is given and flips it upside down (so its effect is visible)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(images.detach().clone())
        return images.flip(-2)


def test_the_augmentation_sees_the_real_and_generated_images_of_both_updates():
    torch.manual_seed(0)
    g = RadioGANGenerator(first_grid=(3, 5), channels=(8, 4))
    d = RadioGANDiscriminator(image_size=(12, 20), channels=(4,) * 8)
    judged = []
    d.register_forward_pre_hook(lambda module, inputs: judged.append(inputs[0].detach().clone()))
    augment = Recording()
    trainer = RadioGANTrainer(
        "cpu", 1, DataLoader(Blobs(5), batch_size=5), g, d,
        torch.optim.Adam(g.parameters(), 2e-4), torch.optim.Adam(d.parameters(), 2e-4),
        class_names=CLASSES, augment=augment,
    )
    trainer.run()
    reals = torch.stack([Blobs(5)[i]["image"] for i in range(5)])
    # one iteration: D update on (real, generated), G update on generated; every judged image was augmented
    assert len(augment.seen) == len(judged) == 3
    assert torch.equal(augment.seen[0], reals)
    assert all(torch.equal(j, s.flip(-2)) for j, s in zip(judged, augment.seen, strict=True))
