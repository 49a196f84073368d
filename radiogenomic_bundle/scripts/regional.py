"""MSE, SSIM and PSNR between two sets of 2D images, over the whole slice and over a region (Xu et al., Table 1).

Images are compared on a [0, 1] scale (data range 1): the bundles' [-1, 1] images are mapped by
``(x + 1) / 2`` first. SSIM uses the standard Gaussian window (11 x 11, sigma 1.5, K1 0.01, K2 0.03) without
padding, like ``monai.metrics.SSIMMetric``; a region's SSIM is the mean of the SSIM map over the region's
pixels that have a full window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
IDENTICAL_MSE = 1e-10


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x.clamp(-1.0, 1.0) + 1.0) / 2.0


def _gaussian_window(device, dtype) -> torch.Tensor:
    coords = torch.arange(WINDOW, device=device, dtype=dtype) - (WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N, 1, H, W) x 2 -> SSIM map (N, 1, H - 10, W - 10) (valid windows only)."""
    window = _gaussian_window(x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    sxx = F.conv2d(x * x, window) - mu_x**2
    syy = F.conv2d(y * y, window) - mu_y**2
    sxy = F.conv2d(x * y, window) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def regional_metrics(generated: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None = None) -> dict:
    """Mean over images of MSE, SSIM and PSNR (dB) inside ``region`` (whole slice when ``None``).

    Args:
        generated, reference: (N, 1, H, W) on the [0, 1] scale.
        region: (N, 1, H, W) {0, 1}; images whose region is empty (or has no full SSIM window) are skipped.

    Returns:
        ``{"mse", "ssim", "psnr", "psnr_of_mean_mse", "identical", "num_images"}``: PSNR of an image is
        ``10 log10(1 / MSE)`` (capped at 100 dB for identical images, of which there are ``identical``) and
        ``psnr`` is its mean over images, which the caps inflate when some images are identical;
        ``psnr_of_mean_mse`` is ``10 log10(1 / mse)`` of the mean MSE, which they do not.
    """
    if generated.shape != reference.shape or generated.ndim != 4:
        raise ValueError(f"expected two (N, 1, H, W) tensors of one shape, got {tuple(generated.shape)}, {tuple(reference.shape)}")
    generated, reference = generated.double(), reference.double()
    if region is None:
        region = torch.ones_like(generated)
    region = (region > 0).double()
    margin = WINDOW // 2
    inner = region[:, :, margin:-margin, margin:-margin]
    squared = (generated - reference) ** 2
    smap = ssim_map(generated, reference)
    mses, ssims, psnrs = [], [], []
    for i in range(generated.shape[0]):
        n_region, n_inner = region[i].sum(), inner[i].sum()
        if n_region == 0 or n_inner == 0:
            continue
        mse = float((squared[i] * region[i]).sum() / n_region)
        mses.append(mse)
        ssims.append(float((smap[i] * inner[i]).sum() / n_inner))
        psnrs.append(_psnr(mse))
    if not mses:
        nan = float("nan")
        return {"mse": nan, "ssim": nan, "psnr": nan, "psnr_of_mean_mse": nan, "identical": 0, "num_images": 0}
    n = len(mses)
    return {
        "mse": sum(mses) / n,
        "ssim": sum(ssims) / n,
        "psnr": sum(psnrs) / n,
        "psnr_of_mean_mse": _psnr(sum(mses) / n),
        "identical": sum(mse <= IDENTICAL_MSE for mse in mses),
        "num_images": n,
    }


def _psnr(mse: float) -> float:
    """PSNR in dB of a [0, 1]-scale MSE, 100 dB when the images are identical."""
    return 100.0 if mse <= IDENTICAL_MSE else 10.0 * math.log10(1.0 / mse)
