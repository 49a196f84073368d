"""Trainer of the radiogenomic fusion GAN."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from bundles.engines.gan_trainer import AdversarialTrainer
from bundles.losses.radiogenomic import RadiogenomicGANLoss, kl_divergence
from bundles.models import unwrap
from bundles.networks.radiogenomic import MCGANGenerator

BATCH_KEYS = ("image", "mask", "genes", "background")


class RadiogenomicTrainer(AdversarialTrainer):
    """One D step then one G step on batches of ``image``, ``mask``, ``background`` (B, 1, S, S) in [-1, 1]
    and ``genes`` (B, G).

    Works with either generator of :mod:`bundles.networks.radiogenomic`; for the MC-GAN baseline the
    conditioning-augmentation KL term is added to the generator loss. Loss terms (engine output "loss"):
    ``d_i, d_is, d_isg, d_total, g_i, g_is, g_isg, g_background_l1, [g_kl,] g_total``.

    Args:
        loss: the :class:`~bundles.losses.radiogenomic.RadiogenomicGANLoss` (head weights, lambda, erosion);
            default weights when omitted.
        other arguments: see :class:`~bundles.engines.gan_trainer.AdversarialTrainer`.
    """

    def __init__(
        self,
        device,
        max_epochs: int,
        train_data_loader,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        loss: RadiogenomicGANLoss | None = None,
        **kwargs,
    ):
        super().__init__(
            device, max_epochs, train_data_loader, generator, discriminator, g_optimizer, d_optimizer, **kwargs
        )
        self.loss = loss if loss is not None else RadiogenomicGANLoss()

    def prepare(self, batchdata: dict) -> dict[str, torch.Tensor]:
        """Plain float tensors (no MetaTensor bookkeeping) of the four inputs, on the device."""
        missing = [k for k in BATCH_KEYS if k not in batchdata]
        if missing:
            raise KeyError(f"training batch lacks {missing}; the train transforms must provide {list(BATCH_KEYS)}")
        batch = {}
        for key in BATCH_KEYS:
            value = batchdata[key]
            value = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
            batch[key] = value.float().to(self.state.device, non_blocking=self.non_blocking)
        return batch

    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Noise (B, noise_dim) from torch's global RNG -> ``{"image", "mask", "noise"}``."""
        background = batch["background"]
        noise = torch.randn(background.shape[0], unwrap(self.generator).noise_dim, device=background.device)
        image, mask = self.generator(background, batch["genes"], noise)
        return {"image": image, "mask": mask, "noise": noise}

    def discriminator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        return self.loss.discriminator_terms(
            self.discriminator, batch["image"], batch["mask"], batch["genes"], fake["image"], fake["mask"]
        )

    def generator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        net = unwrap(self.generator)
        kl = kl_divergence(*net.gene_stats(batch["genes"])) if isinstance(net, MCGANGenerator) else None
        return self.loss.generator_terms(
            self.discriminator, batch["background"], batch["genes"], fake["image"], fake["mask"], kl=kl
        )

    def sample_columns(self, batch: dict, fake: dict) -> list[tuple[str, torch.Tensor]]:
        """background | synthetic | object weight map of the full-resolution block | mask | real reference."""
        with torch.no_grad():
            weight = unwrap(self.generator).weight_maps(batch["background"], batch["genes"], fake["noise"])[-1]
        return [
            ("background", batch["background"]),
            ("synthetic", fake["image"]),
            ("weight map", weight * 2.0 - 1.0),
            ("mask", fake["mask"]),
            ("real reference", batch["image"]),
        ]
