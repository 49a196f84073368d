"""RadioGAN trainer: the paper's conditional DCGAN objective (binary cross-entropy) on PET MIPs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from torch import nn

from gan_core.engines.gan_trainer import AdversarialTrainer

__all__ = ["RadioGANTrainer"]


class RadioGANTrainer(AdversarialTrainer):
    """Class-conditional DCGAN training: D learns real/fake given the class, G learns to fool it.

    Batches hold ``"image"`` (B, 1, S0, S1) in [-1, 1] and ``"label"`` (B,) class indices. Each iteration draws
    z ~ N(0, I) (B, latent_dim) and generates images of the batch's own classes. Losses (binary
    cross-entropy on logits, i.e. the paper's sigmoid + BCE in the stable form):

    - ``d_real`` = BCE(D(x, y), real_label), ``d_fake`` = BCE(D(G(z, y), y), 0), ``d_total`` = their mean;
    - ``g_adv`` = BCE(D(G(z, y), y), 1) = ``g_total``;
    - ``d_acc``: the discriminator's accuracy on this batch (real and fake; the paper's monitored metric),
      logged with the losses, not optimised.

    The per-epoch sample grid has a column of real images and one column per class, each row sharing one z,
    so a row shows what the label alone changes.

    Args (besides :class:`AdversarialTrainer`'s):
        latent_dim: length of z (paper: 100).
        class_names: titles of the per-class sample columns, in label order.
        real_label: target for real images in the D loss (1.0 = the paper; e.g. 0.9 = one-sided smoothing).
        augment: applied to every image the discriminator judges, real and generated, in both updates
            (:class:`scripts.augment.DiffAugment`; None = the paper: no augmentation).
    """

    def __init__(
        self,
        device,
        max_epochs: int,
        train_data_loader,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        latent_dim: int = 100,
        class_names: Sequence[str] = ("normal", "head_neck", "oesophagus", "lung", "lymphoma"),
        real_label: float = 1.0,
        augment: nn.Module | None = None,
        **kwargs,
    ):
        super().__init__(
            device, max_epochs, train_data_loader, generator, discriminator, g_optimizer, d_optimizer, **kwargs
        )
        self.latent_dim = int(latent_dim)
        self.class_names = list(class_names)
        self.real_label = float(real_label)
        self.bce = nn.BCEWithLogitsLoss()
        self.augment = augment if augment is not None else nn.Identity()

    def prepare(self, batchdata: dict) -> dict[str, torch.Tensor]:
        """Keep ``image`` (float, plain tensor) and ``label`` (int64) on the device."""
        image = batchdata["image"]
        if isinstance(image, MetaTensor):
            image = image.as_tensor()
        device, nb = self.state.device, self.non_blocking
        return {
            "image": image.float().to(device, non_blocking=nb),
            "label": torch.as_tensor(batchdata["label"]).long().view(-1).to(device, non_blocking=nb),
        }

    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z = torch.randn(batch["label"].shape[0], self.latent_dim, device=batch["label"].device)
        return {"image": self.generator(z, batch["label"]), "z": z}

    def discriminator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        real_logit = self.discriminator(self.augment(batch["image"]), batch["label"])
        fake_logit = self.discriminator(self.augment(fake["image"]), batch["label"])
        d_real = self.bce(real_logit, torch.full_like(real_logit, self.real_label))
        d_fake = self.bce(fake_logit, torch.zeros_like(fake_logit))
        with torch.no_grad():
            d_acc = torch.cat([(real_logit > 0).float(), (fake_logit <= 0).float()]).mean()
        return {"d_real": d_real, "d_fake": d_fake, "d_total": 0.5 * (d_real + d_fake), "d_acc": d_acc}

    def generator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        logit = self.discriminator(self.augment(fake["image"]), batch["label"])
        g_adv = self.bce(logit, torch.ones_like(logit))
        return {"g_adv": g_adv, "g_total": g_adv}

    def sample_columns(self, batch: dict, fake: dict) -> list[tuple[str, torch.Tensor]]:
        z = fake["z"]
        columns = [("real", batch["image"])]
        for c, name in enumerate(self.class_names):
            labels = torch.full((z.shape[0],), c, dtype=torch.long, device=z.device)
            columns.append((name, self.generator(z, labels)))
        return columns
