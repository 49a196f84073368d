"""Trainer of the radiogenomic fusion GAN."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from gan_core.engines.gan_trainer import AdversarialTrainer
from gan_core.errors import BundleInputError
from gan_core.models import unwrap

from .losses import RadiogenomicGANLoss, kl_divergence
from .networks import FUSIONS, MCGANGenerator

BATCH_KEYS = ("image", "mask", "genes", "background")
# Optional keys of a batch (scripts.prepare.training_items): the patient of each slice,
# its standardised appearance descriptors and the bounds of its size quantile among the patient's slices.
OPTIONAL_KEYS = ("patient_index", "appearance", "slice_quantile")
QUANTILE_EPS = 1e-4


OBJECTIVES = ("appearance", "paper")


def check_training_settings(settings: dict) -> None:
    """The radiogenomic settings whose rules ``gan_core.config.check_settings`` does not know: ``objective`` (one
    of ``OBJECTIVES``), ``fusion`` (one of ``FUSIONS``), ``code_gradient`` (a number in [0, 1]),
    ``d_gene_encoder`` and ``slice_noise`` (true / false), ``slots_per_patient`` (null or an integer >= 1),
    ``background_max_centre_hu`` (null or a number).

    Raises:
        BundleInputError: the first bad setting, named by its config id.
    """
    from gan_core.config import as_flag

    for key, value in settings.items():
        name = key.replace("::", "#").split("#")[-1]
        if name == "objective" and value not in OBJECTIVES:
            raise BundleInputError(f"must be one of {', '.join(OBJECTIVES)}, got {value!r}", field=key,
                                   hint="pass --objective paper for the paper's exact objective, appearance for "
                                   "the default")
        elif name == "slots_per_patient" and value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BundleInputError(f"must be null or an integer >= 1, got {value!r}", field=key,
                                   hint="leave it unset (about one slot per training slice) or pass 12")
        elif name == "background_max_centre_hu" and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BundleInputError(f"must be null or a number (HU), got {value!r}", field=key,
                                   hint="pass -600 (lung at the centre) or null to use every background slice")
        elif name == "fusion" and value not in FUSIONS:
            raise BundleInputError(f"must be one of {', '.join(FUSIONS)}, got {value!r}", field=key,
                                   hint="pass --network#fusion psf (default), mask (the authors' code), weight_map or "
                                   "features (the paper's text)")
        elif name == "code_gradient":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise BundleInputError(f"must be a number in [0, 1], got {value!r}", field=key,
                                       hint="pass --network#code_gradient 1 for the paper, 0.1 for the default")
        elif name in ("d_gene_encoder", "slice_noise"):
            as_flag(value, key)


class RadiogenomicTrainer(AdversarialTrainer):
    """One D step then one G step on batches of ``image``, ``mask``, ``background`` (B, 1, S, S) in [-1, 1]
    and ``genes`` (B, G), optionally ``patient_index`` (B,), ``appearance`` (B, D) and ``slice_quantile`` (B, 2).

    Works with either generator of :mod:`scripts.networks`; for the MC-GAN baseline the
    conditioning-augmentation KL term is added to the generator loss. The discriminator's D_ISG reads the
    generator's gene code (:meth:`training_code`, detached in the D step, attached in the G step so that the
    generator's D_ISG loss trains phi, as in the paper), or the genes when it has its own gene encoder.
    Mismatched masks and codes come from another patient of the batch when ``patient_index`` is given.

    With the loss's ``weight_mode_seeking`` above 0, each generator step also makes a second image of the same
    backgrounds and genes from a second noise draw, for the mode-seeking term.

    Loss terms (engine output "loss"): ``d_i, d_is, d_isg, d_total, g_i, g_is, g_isg, g_background_l1, [g_kl,]
    [g_appearance,] g_consistency_<part> for each of scripts.losses.CONSISTENCY_PARTS,
    [g_mode_seeking,] g_total``; the appearance and consistency terms are computed (and logged) whatever their
    weights, and count only with a weight above 0.

    Args:
        loss: the :class:`~scripts.losses.RadiogenomicGANLoss` (weights, lambda, erosion); default
            weights when omitted.
        slice_noise: tie the first noise coordinate to the slice: ``n_0 = Phi^-1(q)``, q drawn uniformly between
            the bounds of the real slice's area quantile among its patient's slices (``slice_quantile``). Where a 2D
            slice cuts a 3D nodule is not in the genes; this lets the noise carry it (the consistency term then
            asks for the size of that slice), and since q is uniform over a patient's slices, ``n_0`` stays
            standard normal, as the noise at inference. ``False``: plain N(0, I) noise (the paper).
        other arguments: see :class:`~gan_core.engines.gan_trainer.AdversarialTrainer`.
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
        slice_noise: bool = False,
        **kwargs,
    ):
        from gan_core.config import as_flag

        super().__init__(
            device, max_epochs, train_data_loader, generator, discriminator, g_optimizer, d_optimizer, **kwargs
        )
        self.loss = loss if loss is not None else RadiogenomicGANLoss()
        self.slice_noise = as_flag(slice_noise, "slice_noise")

    def prepare(self, batchdata: dict) -> dict[str, torch.Tensor]:
        """Plain float tensors (no MetaTensor bookkeeping) of the inputs, on the device (patient indices int64)."""
        missing = [k for k in BATCH_KEYS if k not in batchdata]
        if missing:
            raise KeyError(f"training batch lacks {missing}; the train transforms must provide {list(BATCH_KEYS)}")
        batch = {}
        for key in BATCH_KEYS + OPTIONAL_KEYS:
            if key not in batchdata:
                continue
            value = batchdata[key]
            value = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
            value = value.long() if key == "patient_index" else value.float()
            batch[key] = value.to(self.state.device, non_blocking=self.non_blocking)
        return batch

    def _reads_code(self) -> bool:
        return not getattr(unwrap(self.discriminator), "own_gene_encoder", True)

    def noise(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, noise_dim) standard normal from torch's global RNG; with ``slice_noise`` and a ``slice_quantile``
        in the batch, coordinate 0 is ``Phi^-1`` of a quantile drawn uniformly inside each slice's bounds."""
        background = batch["background"]
        batch_size = background.shape[0]
        noise = torch.randn(batch_size, unwrap(self.generator).noise_dim, device=background.device)
        if self.slice_noise and "slice_quantile" in batch:
            bounds = batch["slice_quantile"]
            u = torch.rand(batch_size, device=background.device)
            q = (bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])).clamp(QUANTILE_EPS, 1.0 - QUANTILE_EPS)
            noise[:, 0] = torch.special.ndtri(q)
        return noise

    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> ``{"image", "mask", "noise"}`` plus ``"code"`` (the generator's phi(g)) when the discriminator reads it,
        and ``"image_2"``, ``"noise_2"`` (a second noise draw) when the mode-seeking term has a weight."""
        noise = self.noise(batch)
        image, mask = self.generator(batch["background"], batch["genes"], noise)
        fake = {"image": image, "mask": mask, "noise": noise}
        if self.loss.weight_mode_seeking > 0:
            noise_2 = self.noise(batch)
            fake["image_2"], _ = self.generator(batch["background"], batch["genes"], noise_2)
            fake["noise_2"] = noise_2
        if self._reads_code():
            fake["code"] = unwrap(self.generator).training_code(batch["genes"])
        return fake

    def _condition(self, batch: dict, fake: dict) -> torch.Tensor:
        return fake["code"] if "code" in fake else batch["genes"]

    def discriminator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        return self.loss.discriminator_terms(
            self.discriminator, batch["image"], batch["mask"], self._condition(batch, fake), fake["image"],
            fake["mask"], patients=batch.get("patient_index"),
        )

    def generator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        net = unwrap(self.generator)
        kl = kl_divergence(*net.gene_stats(batch["genes"])) if isinstance(net, MCGANGenerator) else None
        code = appearance = None
        if "appearance" in batch and int(net.code_dim) >= batch["appearance"].shape[1]:
            code, appearance = net.encode_genes(batch["genes"]), batch["appearance"]
        return self.loss.generator_terms(
            self.discriminator, batch["background"], self._condition(batch, fake), fake["image"], fake["mask"],
            kl=kl, code=code, appearance=appearance, image=batch["image"], mask=batch["mask"],
            second=(fake["noise"], fake["image_2"], fake["noise_2"]) if "image_2" in fake else None,
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
