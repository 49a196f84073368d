"""Least-squares multi-head objectives of the radiogenomic fusion GAN (Xu et al., Sec. 2.3), and two terms beyond it.

With real image x, matched mask m and gene code c = phi(g), mismatched m_bar / c_bar (those of another patient
of the batch) and the generator's G_x, G_m::

    L_DI   = E[(D_I(x)-1)^2] + E[D_I(G_x)^2]
    L_DIS  = E[(D_IS(x,m)-1)^2] + E[D_IS(x,m_bar)^2] + E[D_IS(G_x,G_m)^2]
    L_DISG = E[(D_ISG(x,m,c)-1)^2] + E[D_ISG(x,m_bar,c)^2] + E[D_ISG(x,m,c_bar)^2] + E[D_ISG(G_x,G_m,c)^2]
    L_G    = E[(D_I(G_x)-1)^2] + E[(D_IS(G_x,G_m)-1)^2] + E[(D_ISG(G_x,G_m,c)-1)^2] + lambda E|G_x - b| M_bg

where b is the background the generator was given and M_bg the eroded background region (G_m < 0) of the
generated mask. The discriminator's and generator's totals weight the heads (defaults: I 8, IS 1, ISG 10).
The gene code is whatever the discriminator reads: the generator's phi(g) (the paper; detached in the
discriminator step by the trainer) or the raw genes (a discriminator with its own gene encoder).

Beyond the paper (weights 0 give the paper's objective exactly):

- ``appearance`` (:func:`appearance_term`): ``E || c[:, :D] - a ||^2``, the first D coordinates of the gene code
  regressed onto the standardised descriptors ``a`` measured on the patient's real nodule (its training
  slices' mean, :mod:`scripts.nodules`): the code then places patients by how their nodules look;
- ``consistency`` (:func:`consistency_term`): the generated nodule's soft diameter, mean intensity, intensity
  spread, boundary length and interior spread match those of the real slice paired with it, ``E |d(G_m) -
  d(m)| / S + E |mu(G_x, G_m) - mu(x, m)| / 2 + E |sigma(G_x, G_m) - sigma(x, m)| / 2 + E |L(G_m) - L(m)| / 4S +
  E |s(G_x, G_m) - s(x, m)| / 2`` (fractions of the image side and of the intensity range), so the generator
  draws one nodule, of the size, density, texture and outline of the patient's, not a speckle or a blotch;
- ``nodule`` (a discriminator with a D_N head, :class:`scripts.networks.RadiogenomicDiscriminator`):
  ``L_DN = E[(D_N(x,m)-1)^2] + E[D_N(G_x,G_m)^2]`` and ``E[(D_N(G_x,G_m)-1)^2]`` for the generator, a local
  adversary on the window around the nodule, where the whole-slice heads see mostly the given background;
- ``mode_seeking`` (:func:`gan_core.losses.mode_seeking`, MSGAN, Mao et al. 2019; the trainer makes a second
  image G(b, g, n_2) of the same background and genes with other noise): small when the two noises give different
  nodules, so the generator draws the spread of a patient's nodules rather than their average one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gan_core.losses import mode_seeking

CONSISTENCY_PARTS = ("size", "density", "spread", "boundary", "interior")
INTERIOR_EROSION = 2  # pixels: the edge of a nodule left out of its interior


def least_squares(prediction: torch.Tensor, target: float) -> torch.Tensor:
    """E[(prediction - target)^2] over every element."""
    return ((prediction - target) ** 2).mean()


def mismatched_index(patients: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """For each sample i the index of a sample of ANOTHER patient: the first j in i+1, i+2, ... (cyclic) whose
    patient differs; the neighbour i-1 when every sample is the same patient (or ``patients`` is None).

    Args:
        patients: (B,) integer patient index of each sample, or None.

    Returns:
        (B,) int64.
    """
    roll = (torch.arange(batch_size) - 1) % batch_size
    if patients is None:
        return roll
    patients = patients.reshape(-1).cpu()
    offsets = torch.arange(1, batch_size)
    candidates = (torch.arange(batch_size)[:, None] + offsets[None, :]) % batch_size  # (B, B-1), nearest first
    differs = patients[candidates] != patients[:, None]
    first = differs.to(torch.int64).argmax(dim=1)  # the first True (0 when none)
    chosen = candidates.gather(1, first[:, None])[:, 0]
    return torch.where(differs.any(dim=1), chosen, roll)


def mismatched(x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` of another subject for every sample: ``x[index]`` (:func:`mismatched_index`), or the batch rolled by
    one along dim 0 when ``index`` is None."""
    if index is None:
        return torch.roll(x, shifts=1, dims=0)
    return x[index.to(x.device)]


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


def soft_nodule_stats(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Diameter (pixels), mean intensity and intensity spread of the nodule of (B, 1, H, W) images and masks in
    [-1, 1].

    The mask's weight ``w = (mask + 1) / 2`` (soft for generated masks, {0, 1} for real ones) gives the area
    ``A = sum w``, the diameter of the circle of that area ``2 sqrt(A / pi)``, the weighted mean intensity
    ``mu = sum(w x) / max(A, 1)`` and the weighted standard deviation ``sqrt(sum(w (x - mu)^2) / max(A, 1))``.
    Differentiable in both inputs.

    Returns:
        diameters (B,), mean intensities (B,), spreads (B,) (intensities on the images' [-1, 1] scale).
    """
    weight = (mask + 1.0) / 2.0
    area = weight.sum(dim=(1, 2, 3))
    diameter = 2.0 * torch.sqrt((area + 1e-6) / math.pi)
    mean = (weight * image).sum(dim=(1, 2, 3)) / area.clamp_min(1.0)
    variance = (weight * (image - mean[:, None, None, None]) ** 2).sum(dim=(1, 2, 3)) / area.clamp_min(1.0)
    return diameter, mean, torch.sqrt(variance + 1e-8)


def boundary_length(mask: torch.Tensor) -> torch.Tensor:
    """Outline length of (B, 1, H, W) masks in [-1, 1], in pixel edges: the anisotropic total variation of the
    weight ``w = (mask + 1) / 2``, ``sum |w[i+1, j] - w[i, j]| + |w[i, j+1] - w[i, j]|``, outside the image counted as
    0. For a binary mask it counts the pixel edges between mask and background (``4 d`` for a d x d square); a
    blurred edge has the same length as a sharp one (a monotone ramp varies by its height), while every speckle and
    fragment adds its own outline. Returns (B,)."""
    w = F.pad((mask + 1.0) / 2.0, [1, 1, 1, 1])
    rows = (w[..., 1:, :] - w[..., :-1, :]).abs().sum(dim=(1, 2, 3))
    cols = (w[..., :, 1:] - w[..., :, :-1]).abs().sum(dim=(1, 2, 3))
    return rows + cols


def interior_spread(image: torch.Tensor, mask: torch.Tensor, erosion: int = INTERIOR_EROSION) -> torch.Tensor:
    """Standard deviation of intensity inside the nodule of (B, 1, H, W) images and masks in [-1, 1], its edge left
    out: weighted by the mask weight ``(mask + 1) / 2`` eroded by ``erosion`` pixels (a minimum over a square of
    side ``2 erosion + 1``; the image border does not erode). What varies inside a real nodule is scanner noise and
    a solid core in ground glass; in a poor generated one, blotches at any scale. (The spread of
    :func:`soft_nodule_stats` is dominated by the soft edge.) Differentiable in the image (and the mask). Returns
    (B,), 0 for an empty interior."""
    weight = (mask + 1.0) / 2.0
    inner = -F.max_pool2d(-weight, 2 * erosion + 1, stride=1, padding=erosion)
    area = inner.sum(dim=(1, 2, 3)).clamp_min(1.0)
    mean = (inner * image).sum(dim=(1, 2, 3)) / area
    variance = (inner * (image - mean[:, None, None, None]) ** 2).sum(dim=(1, 2, 3)) / area
    return torch.sqrt(variance + 1e-8)


def consistency_term(fake_image: torch.Tensor, fake_mask: torch.Tensor, image: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Size, density, texture spread, outline and interior spread of the generated nodule against the real slice
    paired with it.

    Args:
        fake_image, fake_mask: (B, 1, S, S) generator outputs in [-1, 1].
        image, mask: (B, 1, S, S) the real nodule slices of the same patients (mask in {-1, 1}).

    Returns:
        ``(size, density, spread, boundary, interior)``: ``mean |d_fake - d_real| / S``, ``mean |mu_fake - mu_real|
        / 2``, ``mean |sigma_fake - sigma_real| / 2`` (:func:`soft_nodule_stats`; fractions of the image side and of
        the [-1, 1] intensity range), ``mean |L_fake - L_real| / 4S`` (:func:`boundary_length`; a d x d square has
        L / 4 = d, so this is a fraction of the image side too) and ``mean |s_fake - s_real| / 2``
        (:func:`interior_spread`). The spread keeps the mean density from being met by a speckle of bright and
        dark pixels; the boundary keeps the mask one nodule with the patient's outline (a spiculated one long, a
        round one short) instead of fragments and speckle; the interior spread keeps the inside as even as the real
        nodule's (or as structured: a solid core in ground glass), not blotched.
    """
    d_fake, mu_fake, sigma_fake = soft_nodule_stats(fake_image, fake_mask)
    l_fake = boundary_length(fake_mask)
    s_fake = interior_spread(fake_image, fake_mask)
    with torch.no_grad():
        d_real, mu_real, sigma_real = soft_nodule_stats(image, mask)
        l_real = boundary_length(mask)
        s_real = interior_spread(image, mask)
    side = fake_image.shape[-1]
    size = (d_fake - d_real).abs().mean() / side
    density = (mu_fake - mu_real).abs().mean() / 2.0
    spread = (sigma_fake - sigma_real).abs().mean() / 2.0
    boundary = (l_fake - l_real).abs().mean() / (4.0 * side)
    interior = (s_fake - s_real).abs().mean() / 2.0
    return size, density, spread, boundary, interior


def appearance_term(code: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean over batch and descriptors of (code[:, :D] - target)^2``: code (B, code_dim >= D), target (B, D)."""
    d = target.shape[1]
    if code.shape[1] < d:
        raise ValueError(f"the gene code has {code.shape[1]} coordinates, fewer than the {d} appearance targets")
    return ((code[:, :d] - target) ** 2).mean()


class RadiogenomicGANLoss:
    """Owns the bookkeeping of the three discriminator heads, the mismatched pairs and the weights.

    Works with any discriminator that is called as ``discriminator(image, mask, condition, nodule=...)`` and
    returns the D_I, D_IS and D_ISG logits, and a D_N logit when it has one and ``nodule`` is true (see
    :class:`scripts.networks.RadiogenomicDiscriminator`).

    Args:
        weight_i, weight_is, weight_isg: weights of the D_I, D_IS and D_ISG terms (paper code: 8, 1, 10).
        lambda_background: weight of the background L1 term (100).
        erosion: side in pixels of the square that erodes the generated background (5, as MC-GAN).
        weight_kl: weight of the conditioning-augmentation KL term (baseline generator only).
        weight_appearance: weight of :func:`appearance_term` (0 = the paper).
        weight_consistency: weight of the sum of the parts of :func:`consistency_term` (0 = the paper).
        weight_nodule: weight of the D_N terms, counted when the discriminator returns a D_N logit.
        weight_mode_seeking: weight of the mode-seeking term (0 = the paper: no term, and the trainer makes no
            second image).
    """

    def __init__(
        self,
        weight_i: float = 8.0,
        weight_is: float = 1.0,
        weight_isg: float = 10.0,
        lambda_background: float = 100.0,
        erosion: int = 5,
        weight_kl: float = 1.0,
        weight_appearance: float = 0.0,
        weight_consistency: float = 0.0,
        weight_nodule: float = 0.0,
        weight_mode_seeking: float = 0.0,
    ):
        self.weight_i = float(weight_i)
        self.weight_is = float(weight_is)
        self.weight_isg = float(weight_isg)
        self.lambda_background = float(lambda_background)
        self.erosion = int(erosion)
        self.weight_kl = float(weight_kl)
        self.weight_appearance = float(weight_appearance)
        self.weight_consistency = float(weight_consistency)
        self.weight_nodule = float(weight_nodule)
        self.weight_mode_seeking = float(weight_mode_seeking)

    def discriminator_terms(
        self,
        discriminator: torch.nn.Module,
        image: torch.Tensor,
        mask: torch.Tensor,
        condition: torch.Tensor,
        fake_image: torch.Tensor,
        fake_mask: torch.Tensor,
        patients: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Images / masks (B, 1, H, W) in [-1, 1], gene codes or genes (B, K); fakes and codes should be detached.

        ``patients`` (B,) picks the mismatched masks and codes from other patients (:func:`mismatched_index`);
        without it the batch is rolled by one. Returns ``d_i``, ``d_is``, ``d_isg`` (L_DI, L_DIS, L_DISG),
        ``d_n`` (L_DN) when the discriminator has a D_N head, and their weighted sum ``d_total``.
        """
        index = mismatched_index(patients, image.shape[0]) if patients is not None else None
        wrong_mask, wrong_condition = mismatched(mask, index), mismatched(condition, index)
        # every head through the discriminator's forward, so a DistributedDataParallel wrapper syncs its gradients
        i_real, is_real, isg_real, *n_real = discriminator(image, mask, condition)
        _, is_wrong_mask, isg_wrong_mask, *_ = discriminator(image, wrong_mask, condition, nodule=False)
        _, _, isg_wrong_genes, *_ = discriminator(image, mask, wrong_condition, nodule=False)
        i_fake, is_fake, isg_fake, *n_fake = discriminator(fake_image, fake_mask, condition)
        d_i = least_squares(i_real, 1.0) + least_squares(i_fake, 0.0)
        d_is = least_squares(is_real, 1.0) + least_squares(is_wrong_mask, 0.0) + least_squares(is_fake, 0.0)
        d_isg = (
            least_squares(isg_real, 1.0)
            + least_squares(isg_wrong_mask, 0.0)
            + least_squares(isg_wrong_genes, 0.0)
            + least_squares(isg_fake, 0.0)
        )
        total = self.weight_i * d_i + self.weight_is * d_is + self.weight_isg * d_isg
        terms = {"d_i": d_i, "d_is": d_is, "d_isg": d_isg}
        if n_real:
            terms["d_n"] = least_squares(n_real[0], 1.0) + least_squares(n_fake[0], 0.0)
            total = total + self.weight_nodule * terms["d_n"]
        terms["d_total"] = total
        return terms

    def generator_terms(
        self,
        discriminator: torch.nn.Module,
        background: torch.Tensor,
        condition: torch.Tensor,
        fake_image: torch.Tensor,
        fake_mask: torch.Tensor,
        kl: torch.Tensor | None = None,
        *,
        code: torch.Tensor | None = None,
        appearance: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        second: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generator terms for fakes made from ``background`` (B, 1, H, W) and the gene code / genes ``condition``.

        Returns ``g_i``, ``g_is``, ``g_isg``, ``g_n`` when the discriminator has a D_N head, ``g_background_l1``
        (mean over pixels of |G_x - b| * M_bg), ``g_kl`` when ``kl`` is given, ``g_appearance`` when ``code``
        (B, code_dim) and ``appearance`` (B, D) are given, ``g_consistency_<part>`` for each part of
        :func:`consistency_term` (``CONSISTENCY_PARTS``) when the real ``image`` and ``mask`` paired with each fake
        are given, ``g_mode_seeking`` when ``second`` = (noise of ``fake_image`` (B, N), a second image (B, 1, H, W)
        of the same inputs, its noise (B, N)) is given, and ``g_total`` (weighted sum).
        """
        i_fake, is_fake, isg_fake, *n_fake = discriminator(fake_image, fake_mask, condition)
        g_i = least_squares(i_fake, 1.0)
        g_is = least_squares(is_fake, 1.0)
        g_isg = least_squares(isg_fake, 1.0)
        region = eroded_background(fake_mask, self.erosion)
        l1 = ((fake_image - background).abs() * region).mean()
        total = self.weight_i * g_i + self.weight_is * g_is + self.weight_isg * g_isg + self.lambda_background * l1
        terms = {"g_i": g_i, "g_is": g_is, "g_isg": g_isg, "g_background_l1": l1}
        if n_fake:
            terms["g_n"] = least_squares(n_fake[0], 1.0)
            total = total + self.weight_nodule * terms["g_n"]
        if kl is not None:
            terms["g_kl"] = kl
            total = total + self.weight_kl * kl
        if code is not None and appearance is not None:
            terms["g_appearance"] = appearance_term(code, appearance)
            total = total + self.weight_appearance * terms["g_appearance"]
        if image is not None and mask is not None:
            parts = consistency_term(fake_image, fake_mask, image, mask)
            for name, value in zip(CONSISTENCY_PARTS, parts, strict=True):
                terms[f"g_consistency_{name}"] = value
                total = total + self.weight_consistency * value
        if second is not None:
            noise, fake_image_2, noise_2 = second
            terms["g_mode_seeking"] = mode_seeking(fake_image, fake_image_2, noise, noise_2).mean()
            total = total + self.weight_mode_seeking * terms["g_mode_seeking"]
        terms["g_total"] = total
        return terms
