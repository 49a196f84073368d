"""Trainer of the radiogenomic fusion GAN and the transform that pairs each nodule slice with a background."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable, Transform

from bundles.engines.gan_trainer import AdversarialTrainer
from bundles.engines.handlers import unwrap
from bundles.losses.radiogenomic import RadiogenomicGANLoss, kl_divergence
from bundles.networks.radiogenomic import MCGANGenerator

BATCH_KEYS = ("image", "mask", "genes", "background")


class PairBackgroundd(Randomizable, Transform):
    """Add ``data[key]`` = a background slice drawn uniformly from ``backgrounds``.

    The generator is trained to put the nodule of (image, mask, genes) onto a nodule-free background, and
    the L1 term keeps that background outside the generated mask, as at inference time.

    Args:
        backgrounds: a sequence of datalist entries ``{"image": ...}`` or plain paths. Pass a
            ``CacheDataset`` of the background entries (with the loading transforms) to draw slices already
            in memory; its transforms must be deterministic and the transforms after this one must not
            modify the drawn array in place (MONAI's random flips return new arrays).
        key: the key to add (default ``"background"``).
        source_key: the entry's key that holds the slice (default ``"image"``).
    """

    def __init__(self, backgrounds: Sequence[Mapping | str], key: str = "background", source_key: str = "image"):
        if len(backgrounds) == 0:
            raise ValueError("PairBackgroundd needs at least one background slice")
        self.backgrounds = backgrounds
        self.key = key
        self.source_key = source_key
        self._index = 0

    def randomize(self, data=None) -> None:
        self._index = int(self.R.randint(len(self.backgrounds)))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        entry = self.backgrounds[self._index]
        d = dict(data)
        d[self.key] = entry[self.source_key] if isinstance(entry, Mapping) else str(entry)
        return d


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
