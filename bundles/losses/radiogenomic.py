"""Least-squares multi-head objectives of the radiogenomic fusion GAN (Xu et al., Sec. 2.3).

With real image x, matched mask m and genes g, mismatched m_bar / g_bar (another subject of the batch) and
the generator's G_x, G_m::

    L_DI   = E[(D_I(x)-1)^2] + E[D_I(G_x)^2]
    L_DIS  = E[(D_IS(x,m)-1)^2] + E[D_IS(x,m_bar)^2] + E[D_IS(G_x,G_m)^2]
    L_DISG = E[(D_ISG(x,m,g)-1)^2] + E[D_ISG(x,m_bar,g)^2] + E[D_ISG(x,m,g_bar)^2] + E[D_ISG(G_x,G_m,g)^2]
    L_G    = E[(D_I(G_x)-1)^2] + E[(D_IS(G_x,G_m)-1)^2] + E[(D_ISG(G_x,G_m,g)-1)^2] + lambda E|G_x - b| M_bg

where b is the background the generator was given and M_bg the eroded background region (G_m < 0) of the
generated mask. The discriminator's and generator's totals weight the heads (defaults: I 8, IS 1, ISG 10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def least_squares(prediction: torch.Tensor, target: float) -> torch.Tensor:
    """E[(prediction - target)^2] over every element."""
    return ((prediction - target) ** 2).mean()


def mismatched(x: torch.Tensor) -> torch.Tensor:
    """The batch rolled by one along dim 0: sample i gets sample i-1's mask / genes (another subject)."""
    return torch.roll(x, shifts=1, dims=0)


def eroded_background(fake_mask: torch.Tensor, erosion: int) -> torch.Tensor:
    """(B, 1, H, W) mask in [-1, 1] -> {0, 1} background (mask < 0) eroded by an ``erosion`` x ``erosion`` square.

    Erosion of the background = dilation (max-pool) of the nodule; the image border does not erode. Detached.
    """
    background = (fake_mask.detach() < 0).to(fake_mask.dtype)
    if erosion <= 1:
        return background
    nodule = F.max_pool2d(1.0 - background, kernel_size=erosion, stride=1, padding=erosion // 2)
    return 1.0 - nodule[..., : fake_mask.shape[-2], : fake_mask.shape[-1]]


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)), summed over the code and averaged over the batch (MC-GAN's CA term)."""
    return (-0.5 * (1.0 + log_var - mu**2 - log_var.exp()).sum(dim=1)).mean()


class RadiogenomicGANLoss:
    """Owns the bookkeeping of the three discriminator heads, the mismatched pairs and the weights.

    Works with any discriminator that has ``image_logits(x)``, ``pair_features(x, m)``,
    ``pair_logits(features)`` and ``gene_logits(features, g)`` (see
    :class:`bundles.networks.radiogenomic.RadiogenomicDiscriminator`).

    Args:
        weight_i, weight_is, weight_isg: weights of the D_I, D_IS and D_ISG terms (paper code: 8, 1, 10).
        lambda_background: weight of the background L1 term (100).
        erosion: side in pixels of the square that erodes the generated background (5, as MC-GAN).
        weight_kl: weight of the conditioning-augmentation KL term (baseline generator only).
    """

    def __init__(
        self,
        weight_i: float = 8.0,
        weight_is: float = 1.0,
        weight_isg: float = 10.0,
        lambda_background: float = 100.0,
        erosion: int = 5,
        weight_kl: float = 1.0,
    ):
        self.weight_i = float(weight_i)
        self.weight_is = float(weight_is)
        self.weight_isg = float(weight_isg)
        self.lambda_background = float(lambda_background)
        self.erosion = int(erosion)
        self.weight_kl = float(weight_kl)

    def discriminator_terms(
        self,
        discriminator: torch.nn.Module,
        image: torch.Tensor,
        mask: torch.Tensor,
        genes: torch.Tensor,
        fake_image: torch.Tensor,
        fake_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Images / masks (B, 1, H, W) in [-1, 1], genes (B, G); fakes should be detached.

        Returns ``d_i``, ``d_is``, ``d_isg`` (L_DI, L_DIS, L_DISG) and their weighted sum ``d_total``.
        """
        wrong_mask, wrong_genes = mismatched(mask), mismatched(genes)
        # every head through the discriminator's forward, so a DistributedDataParallel wrapper syncs its gradients
        i_real, is_real, isg_real = discriminator(image, mask, genes)
        _, is_wrong_mask, isg_wrong_mask = discriminator(image, wrong_mask, genes)
        _, _, isg_wrong_genes = discriminator(image, mask, wrong_genes)
        i_fake, is_fake, isg_fake = discriminator(fake_image, fake_mask, genes)
        d_i = least_squares(i_real, 1.0) + least_squares(i_fake, 0.0)
        d_is = least_squares(is_real, 1.0) + least_squares(is_wrong_mask, 0.0) + least_squares(is_fake, 0.0)
        d_isg = (
            least_squares(isg_real, 1.0)
            + least_squares(isg_wrong_mask, 0.0)
            + least_squares(isg_wrong_genes, 0.0)
            + least_squares(isg_fake, 0.0)
        )
        total = self.weight_i * d_i + self.weight_is * d_is + self.weight_isg * d_isg
        return {"d_i": d_i, "d_is": d_is, "d_isg": d_isg, "d_total": total}

    def generator_terms(
        self,
        discriminator: torch.nn.Module,
        background: torch.Tensor,
        genes: torch.Tensor,
        fake_image: torch.Tensor,
        fake_mask: torch.Tensor,
        kl: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generator terms for fakes made from ``background`` (B, 1, H, W) and ``genes`` (B, G).

        Returns ``g_i``, ``g_is``, ``g_isg``, ``g_background_l1`` (mean over pixels of |G_x - b| * M_bg),
        ``g_kl`` when ``kl`` is given, and ``g_total`` (weighted sum).
        """
        i_fake, is_fake, isg_fake = discriminator(fake_image, fake_mask, genes)
        g_i = least_squares(i_fake, 1.0)
        g_is = least_squares(is_fake, 1.0)
        g_isg = least_squares(isg_fake, 1.0)
        region = eroded_background(fake_mask, self.erosion)
        l1 = ((fake_image - background).abs() * region).mean()
        total = self.weight_i * g_i + self.weight_is * g_is + self.weight_isg * g_isg + self.lambda_background * l1
        terms = {"g_i": g_i, "g_is": g_is, "g_isg": g_isg, "g_background_l1": l1}
        if kl is not None:
            terms["g_kl"] = kl
            total = total + self.weight_kl * kl
        terms["g_total"] = total
        return terms
