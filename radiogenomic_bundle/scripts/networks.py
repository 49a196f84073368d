"""Networks of the radiogenomic fusion GAN (Xu et al.) and of its MC-GAN baseline (Park et al., BMVC 2018).

Both generators share one signature, ``forward(background, genes, noise) -> (image, mask)``:

- ``background``: (B, 1, S, S) CT slice scaled to [-1, 1] (HU clipped to [-1000, 500]);
- ``genes``: (B, G) standardised gene expression profile;
- ``noise``: (B, noise_dim) standard normal;
- ``image``: (B, 1, S, S) synthetic slice in [-1, 1]; ``mask``: (B, 1, S, S) nodule mask in [-1, 1] (> 0 = nodule).

``S`` must be a multiple of 16: the background encoder keeps five resolutions (S, S/2, ..., S/16) and the
gene "style" map starts at S/16 (8 x 8 for the paper's 128 x 128 slices).

The proposed generator comes in fusion variants (``fusion``): ``"features"`` is the paper's text (fusion blocks on
features only; the last convolution gives image and mask), ``"mask"`` is the authors' public code (MONAI PR #531:
the synthesised image is blended into the background image at pixel level with the generated mask as the weight),
``"psf"`` (default) is the authors' blend seen through the scanner's point-spread function, and ``"weight_map"``
(this bundle's earlier default) blends at pixel level with a weight map of its own.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_core.config import as_flag
from gan_core.transforms import HU_MAX, HU_MIN

from .layers import AdaIN, conv_bn, init_orthogonal, up_glu

NUM_LEVELS = 5
FUSIONS = ("psf", "mask", "weight_map", "features")
PSF_SIGMA = 1.5  # pixels: softer than the demo CT's own blur (0.7 voxels of 1.33 mm, 1.0 px at 0.94 mm); 1.0 drew edges a classifier spots
OBJECT_SIGMA = 1.5  # pixels: the object image's own smoothing (a nodule's density varies slowly; its edge is the mask's)
LUNG_HU = -500.0  # background pixels below this are lung parenchyma (air-filled), where a nodule can grow
LUNG_CLOSING = 5  # pixels: side of the square that closes the lung region over vessels and fissures


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """(1, 1, 2r + 1, 2r + 1) normalised Gaussian."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def lung_region(background: torch.Tensor, threshold: float, closing: int = LUNG_CLOSING) -> torch.Tensor:
    """(B, 1, S, S) background in [-1, 1] -> (B, 1, S, S) in {0, 1}: pixels below ``threshold`` (lung parenchyma),
    closed by a ``closing`` x ``closing`` square (dilation then erosion; the image border does not erode), so that
    vessels and fissures inside the lung count as lung while the chest wall and mediastinum do not."""
    lung = (background < threshold).to(background.dtype)
    pad = closing // 2
    grown = nn.functional.max_pool2d(lung, closing, stride=1, padding=pad)
    return -nn.functional.max_pool2d(-grown, closing, stride=1, padding=pad)


def level_channels(base_channels: int, num_levels: int = NUM_LEVELS) -> list[int]:
    """Channels per resolution level, level 0 = full resolution: base, 2 base, 4 base, 8 base, 8 base, ..."""
    return [base_channels * min(2**i, 8) for i in range(num_levels)]


def _check_size(image_size: int) -> int:
    if image_size < 16 or image_size % 16:
        raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
    return image_size // 16


class GeneEncoder(nn.Module):
    """Gene mapping network: Linear(G -> hidden), LeakyReLU(0.2), Linear(hidden -> code_dim); (B, G) -> (B, code_dim)."""

    def __init__(self, num_genes: int, hidden: int = 512, code_dim: int = 128):
        super().__init__()
        self.num_genes = num_genes
        self.net = nn.Sequential(nn.Linear(num_genes, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, code_dim))

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        return self.net(genes)


class BackgroundEncoder(nn.Module):
    """3x3 conv + BN + LeakyReLU with strides 1, 2, 2, 2, 2; returns the features of every resolution.

    (B, 1, S, S) -> list of (B, C_i, S / 2**i, S / 2**i), i = 0..4.
    """

    def __init__(self, channels: list[int], in_channels: int = 1):
        super().__init__()
        layers = [conv_bn(in_channels, channels[0], stride=1)]
        layers += [conv_bn(channels[i - 1], channels[i], stride=2) for i in range(1, len(channels))]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class FusionBlock(nn.Module):
    """The paper's fusion block at one resolution, followed by the upsampling to the next one.

    Synthesis features -> conv+BN, conv+BN (channels doubled) -> first half: weight map
    ``w = (tanh + 1) / 2``, second half: object features. ``fused = AdaIN(object * w, style) +
    background * (1 - w)``, then nearest x2 + conv3x3 + BN + GLU (identity at the last level).

    Args:
        channels: C of the synthesis and background features at this level.
        style_dim: length of the style vector (gene code + noise).
        out_channels: channels after upsampling, or 0 for the last (full-resolution) level.
    """

    def __init__(self, channels: int, style_dim: int, out_channels: int = 0):
        super().__init__()
        self.channels = channels
        self.encode = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, 2 * channels, act=False))
        self.adain = AdaIN(channels, style_dim)
        self.up = up_glu(channels, out_channels) if out_channels > 0 else nn.Identity()

    def forward(self, h: torch.Tensor, background: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h, background: (B, C, r, r); style: (B, style_dim) -> (upsampled output, weight map (B, C, r, r))."""
        code = self.encode(h)
        weight = (torch.tanh(code[:, : self.channels]) + 1.0) / 2.0
        obj = code[:, self.channels :]
        fused = self.adain(obj * weight, style) + background * (1.0 - weight)
        return self.up(fused), weight


class SwitchBlock(nn.Module):
    """MC-GAN's synthesis block: ``out = foreground + background * sigmoid(switch)``, no AdaIN, then upsampling.

    Returns the object weight ``1 - switch`` so both generators expose comparable weight maps.
    """

    def __init__(self, channels: int, out_channels: int = 0):
        super().__init__()
        self.channels = channels
        self.encode = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, 2 * channels, act=False))
        self.up = up_glu(channels, out_channels) if out_channels > 0 else nn.Identity()

    def forward(self, h: torch.Tensor, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(h)
        switch = torch.sigmoid(code[:, : self.channels])
        fused = code[:, self.channels :] + background * switch
        return self.up(fused), 1.0 - switch


def _base_map(in_features: int, channels: int, size: int) -> nn.Sequential:
    """Linear(in -> 2 * C * size^2, no bias) + BatchNorm1d + GLU -> (B, C * size^2), reshaped by the caller."""
    return nn.Sequential(
        nn.Linear(in_features, 2 * channels * size * size, bias=False),
        nn.BatchNorm1d(2 * channels * size * size),
        nn.GLU(dim=1),
    )


class RadiogenomicGenerator(nn.Module):
    """Proposed generator: background encoder + gene mapping network + one fusion block per resolution.

    The base style ``s = [phi(g), n]`` is projected to the (C, S/16, S/16) code map that starts the synthesis
    path, and it styles the object features of every fusion block through AdaIN.

    Args:
        num_genes: G, length of the gene profile.
        image_size: S (multiple of 16; paper 128).
        base_channels: channels at full resolution (doubling per level, at most 8x).
        code_dim: length of the gene code phi(g) (paper 128; with the appearance objective, the number of measured
            nodule descriptors, each code coordinate anchored to one of them).
        noise_dim: length of the noise vector (paper 10).
        hidden: width of the gene mapping network's hidden layer (paper 512).
        fusion: how the synthesised image meets the background image after the last fusion block:
            ``"features"``: not at all, the paper's text (the last convolution gives image and mask, every
            background pixel is re-synthesised from features); ``"mask"``: the authors' code, ``m * o + (1 - m) *
            background`` with ``o`` the synthesised object image and ``m = (mask + 1) / 2`` the generated mask;
            ``"psf"``: the same blend through the scanner's point-spread function P (a Gaussian of ``psf_sigma``
            pixels): ``background + P(m) * (Q(o) - P(background))``, i.e. inside the nodule the smoothed object
            plus the background's own fine texture (its scanner noise), outside it the background unchanged;
            a nodule is a change of density that the scanner blurs and overlays with the same noise as the lung
            around it, so the generator neither draws pixel speckle nor has to invent noise. The object image is
            smoothed a little more (Q: ``OBJECT_SIGMA`` pixels): the nodule's edge comes from the mask, its
            interior density varies slowly;
            ``"weight_map"``: ``w * o + (1 - w) * background`` with a weight map ``w = (tanh + 1) / 2`` of its own
            (a third output channel), the paper's fusion block applied once more at the pixel level.
        lung_gate: keep the nodule inside the background's lung: the generated mask (and every pixel-level weight)
            is multiplied by :func:`lung_region` of the background (below ``LUNG_HU``, closed over vessels). A
            nodule grows in the lung parenchyma and displaces it (a juxtapleural one reaches the pleura, not
            beyond), and every real training mask lies there; without the gate the generator also puts mask
            fragments on the chest wall, where the background L1 term does not look and the image is unchanged.
            ``False`` (the paper) leaves the mask free.
        psf_sigma: the point-spread function's standard deviation (pixels) in the ``"psf"`` fusion: how soft a
            nodule's edge is drawn.
        object_sigma: the object image's smoothing (pixels) in the ``"psf"`` fusion.
        code_gradient: share of the synthesis path's gradient that reaches the gene mapping network (1 = the
            paper). The forward value is always ``phi(g)``; below 1, ``code_gradient * phi + (1 - code_gradient) *
            phi.detach()`` enters the style, so that other objectives on ``phi`` (the appearance term) are not
            swamped by the generator's use of the code as a per-patient lookup. No effect at inference.
        image_fusion: the older boolean form of ``fusion`` (``True`` = "weight_map", ``False`` = "features"),
            read from the records of models written before ``fusion`` existed.
    """

    def __init__(
        self,
        num_genes: int,
        image_size: int = 128,
        base_channels: int = 32,
        code_dim: int = 128,
        noise_dim: int = 10,
        hidden: int = 512,
        fusion: str = "psf",
        code_gradient: float = 1.0,
        lung_gate: bool = False,
        psf_sigma: float = PSF_SIGMA,
        object_sigma: float = OBJECT_SIGMA,
        image_fusion: bool | None = None,
    ):
        super().__init__()
        if image_fusion is not None:
            fusion = "weight_map" if as_flag(image_fusion, "image_fusion") else "features"
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        if not 0.0 <= float(code_gradient) <= 1.0:
            raise ValueError(f"code_gradient must lie in [0, 1], got {code_gradient!r}")
        self.num_genes = num_genes
        self.image_size = image_size
        self.noise_dim = noise_dim
        self.code_dim = code_dim
        self.fusion = fusion
        self.code_gradient = float(code_gradient)
        self.lung_gate = as_flag(lung_gate, "lung_gate")
        self.lung_threshold = (LUNG_HU - HU_MIN) / (HU_MAX - HU_MIN) * 2.0 - 1.0
        self.code_size = _check_size(image_size)
        channels = level_channels(base_channels)
        self.bottleneck_channels = channels[-1]
        style_dim = code_dim + noise_dim
        self.gene_encoder = GeneEncoder(num_genes, hidden, code_dim)
        self.background_encoder = BackgroundEncoder(channels)
        self.base = _base_map(style_dim, channels[-1], self.code_size)
        self.blocks = nn.ModuleList(
            [FusionBlock(channels[i], style_dim, channels[i - 1] if i > 0 else 0) for i in range(NUM_LEVELS - 1, -1, -1)]
        )
        self.out = nn.Sequential(nn.Conv2d(channels[0], 3 if fusion == "weight_map" else 2, 3, padding=1), nn.Tanh())
        init_orthogonal(self)
        for buffer, name, sigma in (("psf", "psf_sigma", psf_sigma), ("object_psf", "object_sigma", object_sigma)):
            if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
                raise ValueError(f"{name} must be a positive number of pixels, got {sigma!r}")
            self.register_buffer(buffer, gaussian_kernel(float(sigma), max(1, round(2 * float(sigma)))), persistent=False)

    @torch.jit.export
    def encode_genes(self, genes: torch.Tensor) -> torch.Tensor:
        """(B, G) -> gene code phi(g), (B, code_dim)."""
        return self.gene_encoder(genes)

    @torch.jit.export
    def training_code(self, genes: torch.Tensor) -> torch.Tensor:
        """phi(g) with the synthesis path's share of the gradient (``code_gradient``): the value of
        :meth:`encode_genes`, a gradient scaled by ``code_gradient``."""
        code = self.gene_encoder(genes)
        if self.code_gradient < 1.0:
            code = self.code_gradient * code + (1.0 - self.code_gradient) * code.detach()
        return code

    def _synthesise(
        self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.background_encoder(background)
        style = torch.cat([self.training_code(genes), noise], dim=1)
        h = self.base(style).view(-1, self.bottleneck_channels, self.code_size, self.code_size)
        weights: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            h, w = block(h, features[len(features) - 1 - i], style)
            weights.append(w.mean(dim=1, keepdim=True))
        out = self.out(h)
        mask = out[:, 1:2]
        lung = torch.ones_like(mask)
        if self.lung_gate:
            lung = lung_region(background, self.lung_threshold)
            mask = ((mask + 1.0) * lung - 1.0)
        if self.fusion == "features":
            return torch.cat([out[:, :1], mask], dim=1), weights
        if self.fusion == "psf":
            weight = self._blur((mask + 1.0) / 2.0)
            weights.append(weight)
            image = background + weight * (self._blur(out[:, :1], self.object_psf) - self._blur(background))
            return torch.cat([image.clamp(-1.0, 1.0), mask], dim=1), weights
        if self.fusion == "mask":
            weight = (mask + 1.0) / 2.0
        else:
            weight = (out[:, 2:3] + 1.0) / 2.0 * lung
        weights.append(weight)
        image = weight * out[:, :1] + (1.0 - weight) * background
        return torch.cat([image, mask], dim=1), weights

    def _blur(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, S, S) through the point-spread function (or ``kernel``), reflecting at the borders."""
        k = self.psf if kernel is None else kernel
        radius = k.shape[-1] // 2
        return nn.functional.conv2d(nn.functional.pad(x, [radius, radius, radius, radius], mode="reflect"), k)

    def forward(self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, S, S), (B, G), (B, noise_dim) -> image (B, 1, S, S), mask (B, 1, S, S), both in [-1, 1]."""
        out, _ = self._synthesise(background, genes, noise)
        return out[:, :1], out[:, 1:]

    @torch.jit.export
    def weight_maps(self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        """Object weight map of every fusion block (channel mean of w, in [0, 1]), coarsest first: (B, 1, r, r);
        with pixel-level fusion the pixel-level weight (``w`` or the mask's) comes last (B, 1, S, S)."""
        _, weights = self._synthesise(background, genes, noise)
        return weights


class MCGANGenerator(nn.Module):
    """MC-GAN baseline: the code enters only at the bottleneck; sigmoid switch blocks, no AdaIN.

    Genes go through conditioning augmentation: ``[mu, log_var] = mapping(g)``, code ``c = mu + eps * sigma``
    (eps ~ N(0, I) while training, 0 in eval mode); the trainer adds the KL term of :meth:`gene_stats`.
    Arguments as :class:`RadiogenomicGenerator`.
    """

    def __init__(
        self,
        num_genes: int,
        image_size: int = 128,
        base_channels: int = 32,
        code_dim: int = 128,
        noise_dim: int = 10,
        hidden: int = 512,
    ):
        super().__init__()
        self.num_genes = num_genes
        self.image_size = image_size
        self.noise_dim = noise_dim
        self.code_dim = code_dim
        self.code_size = _check_size(image_size)
        channels = level_channels(base_channels)
        self.bottleneck_channels = channels[-1]
        self.gene_encoder = GeneEncoder(num_genes, hidden, 2 * code_dim)
        self.background_encoder = BackgroundEncoder(channels)
        self.base = _base_map(code_dim + noise_dim, channels[-1], self.code_size)
        self.joint = conv_bn(2 * channels[-1], channels[-1])
        self.blocks = nn.ModuleList(
            [SwitchBlock(channels[i], channels[i - 1] if i > 0 else 0) for i in range(NUM_LEVELS - 1, -1, -1)]
        )
        self.out = nn.Sequential(nn.Conv2d(channels[0], 2, 3, padding=1), nn.Tanh())
        init_orthogonal(self)

    @torch.jit.export
    def gene_stats(self, genes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, G) -> mean and log-variance of the conditioning augmentation, each (B, code_dim)."""
        stats = self.gene_encoder(genes)
        return stats[:, : self.code_dim], stats[:, self.code_dim :]

    @torch.jit.export
    def encode_genes(self, genes: torch.Tensor) -> torch.Tensor:
        """(B, G) -> the baseline's gene code (the conditioning mean), (B, code_dim)."""
        return self.gene_stats(genes)[0]

    @torch.jit.export
    def training_code(self, genes: torch.Tensor) -> torch.Tensor:
        """The code a discriminator that reads the generator's code receives: the conditioning mean."""
        return self.gene_stats(genes)[0]

    def _synthesise(
        self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.background_encoder(background)
        mu, log_var = self.gene_stats(genes)
        code = mu
        if self.training:
            code = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        base = self.base(torch.cat([code, noise], dim=1))
        h = base.view(-1, self.bottleneck_channels, self.code_size, self.code_size)
        h = self.joint(torch.cat([h, features[len(features) - 1]], dim=1))
        weights: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            h, w = block(h, features[len(features) - 1 - i])
            weights.append(w.mean(dim=1, keepdim=True))
        return self.out(h), weights

    def forward(self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, S, S), (B, G), (B, noise_dim) -> image (B, 1, S, S), mask (B, 1, S, S), both in [-1, 1]."""
        out, _ = self._synthesise(background, genes, noise)
        return out[:, :1], out[:, 1:]

    @torch.jit.export
    def weight_maps(self, background: torch.Tensor, genes: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        """Object weight (1 - switch, channel mean) of every block, coarsest first: (B, 1, r, r)."""
        _, weights = self._synthesise(background, genes, noise)
        return weights


def crop_patches(images: torch.Tensor, masks: torch.Tensor, size: int = 32) -> torch.Tensor:
    """``size`` x ``size`` patches centred on each image's nodule: what a generator drew, not the background it
    was given. Differentiable in ``images`` (the windows are chosen from the masks, without a gradient).

    Args:
        images: (M, C, H, W); masks: (M, 1, H, W), nodule where > 0 (True).
        size: patch side (at most min(H, W)).

    Returns:
        (M, C, size, size): the window around the mask's centroid (rounded), shifted to lie inside the image; the
        image centre for an empty mask.
    """
    m, _, h, w = images.shape
    if size > min(h, w):
        raise ValueError(f"patch size {size} exceeds the images' {h} x {w}")
    nodule = (masks.detach() > 0).reshape(m, h, w)
    patches: list[torch.Tensor] = []
    for i in range(m):
        where = torch.nonzero(nodule[i]).float()
        c0, c1 = h // 2, w // 2
        if where.shape[0] > 0:
            c0, c1 = int(torch.round(where[:, 0].mean())), int(torch.round(where[:, 1].mean()))
        r0 = min(max(c0 - size // 2, 0), h - size)
        s0 = min(max(c1 - size // 2, 0), w - size)
        patches.append(images[i, :, r0 : r0 + size, s0 : s0 + size])
    return torch.stack(patches)


def _down(in_channels: int, channels: list[int]) -> nn.Sequential:
    """4x4 stride-2 convs, LeakyReLU(0.2), BN after the first: (B, in, S, S) -> (B, channels[-1], S/16, S/16)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    for i in range(1, len(channels)):
        layers.append(conv_bn(channels[i - 1], channels[i], stride=2, kernel_size=4))
    return nn.Sequential(*layers)


class RadiogenomicDiscriminator(nn.Module):
    """Three-head discriminator: D_I(image), D_IS(image, mask), D_ISG(image, mask, gene code); with
    ``nodule_patch`` > 0 a fourth, D_N(image, mask) on the ``nodule_patch``-pixel window around the mask's centroid.

    D_I and D_IS each have their own encoder down to S/16; D_ISG concatenates the D_IS features with a gene code
    tiled over the map, then conv3x3 + BN + LeakyReLU. Every head ends in a (S/16 x S/16) convolution to a
    (B, 1, 1, 1) logit (least-squares targets, no activation).

    D_N is a local discriminator (Iizuka et al., "Globally and locally consistent image completion", 2017): the
    nodule is a few percent of the slice, so the whole-slice heads judge mostly the background the generator was
    given; D_N sees only the nodule and its margin (:func:`crop_patches`; the image only: a real mask is binary and a
    generated one soft, which would tell them apart without looking at the nodule), through two
    stride-2 convolutions to (P/4 x P/4) and a convolution to its logit.

    The gene code is, as in the paper, the generator's phi(g), handed in by the trainer (``condition`` of
    :meth:`forward` and :meth:`gene_logits` is then (B, code_dim)): the discriminator step receives it detached,
    the generator step attached, so the generator's D_ISG loss trains phi. With ``gene_encoder=True`` the
    discriminator instead owns a gene mapping network and ``condition`` is the gene profile (B, G) (MC-GAN's
    discriminator projects its text itself; this bundle's earlier default).

    Args:
        num_genes: G.
        image_size: S (multiple of 16).
        base_channels: channels of the first layer (doubling per layer, 4 layers).
        code_dim: length of the gene code (the generator's ``code_dim``, or of the own encoder's output).
        hidden: the own gene mapping network's hidden width (``gene_encoder=True`` only).
        gene_encoder: own a gene mapping network (``True``) or read the generator's code (``False``, the paper).
        nodule_patch: P, the side of D_N's window in pixels (a multiple of 4, at most S); 0 = no D_N (the paper).
    """

    def __init__(self, num_genes: int, image_size: int = 128, base_channels: int = 32, code_dim: int = 128,
                 hidden: int = 512, gene_encoder: bool = False, nodule_patch: int = 0):
        super().__init__()
        self.num_genes = num_genes
        self.image_size = image_size
        self.code_dim = code_dim
        self.own_gene_encoder = as_flag(gene_encoder, "gene_encoder")
        size = _check_size(image_size)
        channels = [base_channels * 2**i for i in range(4)]
        self.image_encoder = _down(1, channels)
        self.pair_encoder = _down(2, channels)
        self.gene_encoder = GeneEncoder(num_genes, hidden, code_dim) if self.own_gene_encoder else nn.Identity()
        self.joint = conv_bn(channels[-1] + code_dim, channels[-1])
        self.head_i = nn.Conv2d(channels[-1], 1, size)
        self.head_is = nn.Conv2d(channels[-1], 1, size)
        self.head_isg = nn.Conv2d(channels[-1], 1, size)
        self.nodule_patch = int(nodule_patch)
        if self.nodule_patch < 0 or self.nodule_patch % 4 or self.nodule_patch > image_size:
            raise ValueError(f"nodule_patch must be 0 or a multiple of 4 up to image_size {image_size}, got {nodule_patch}")
        self.nodule_encoder = _down(1, channels[:2]) if self.nodule_patch else nn.Identity()
        self.head_n = nn.Conv2d(channels[1], 1, self.nodule_patch // 4) if self.nodule_patch else nn.Identity()
        init_orthogonal(self)

    @torch.jit.export
    def image_logits(self, image: torch.Tensor) -> torch.Tensor:
        """D_I: (B, 1, S, S) -> (B, 1, 1, 1)."""
        return self.head_i(self.image_encoder(image))

    @torch.jit.export
    def pair_features(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shared D_IS / D_ISG encoder: (B, 1, S, S) x 2 -> (B, C, S/16, S/16)."""
        return self.pair_encoder(torch.cat([image, mask], dim=1))

    @torch.jit.export
    def pair_logits(self, features: torch.Tensor) -> torch.Tensor:
        """D_IS head on :meth:`pair_features`: -> (B, 1, 1, 1)."""
        return self.head_is(features)

    @torch.jit.export
    def gene_logits(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """D_ISG head on :meth:`pair_features` and the gene code (B, code_dim) (genes (B, G) with an own
        encoder): -> (B, 1, 1, 1)."""
        code = self.gene_encoder(condition)[:, :, None, None].expand(-1, -1, features.shape[2], features.shape[3])
        return self.head_isg(self.joint(torch.cat([features, code], dim=1)))

    def nodule_logits(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """D_N: (B, 1, S, S) x 2 -> (B, 1, 1, 1), from the (P x P) window around each mask's nodule."""
        return self.head_n(self.nodule_encoder(crop_patches(image, mask, self.nodule_patch)))

    def forward(self, image: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor,
                nodule: bool = True) -> list[torch.Tensor]:
        """(B, 1, S, S), (B, 1, S, S), gene code (B, code_dim) or genes (B, G) -> logits of D_I, D_IS, D_ISG
        (and D_N when ``nodule_patch`` > 0 and ``nodule``), each (B, 1, 1, 1). ``nodule=False`` skips D_N for the
        mismatched pairs, whose D_N logit no loss reads (D_N sees the image only)."""
        features = self.pair_features(image, mask)
        logits = [self.image_logits(image), self.pair_logits(features), self.gene_logits(features, condition)]
        if self.nodule_patch > 0 and nodule:
            logits.append(self.nodule_logits(image, mask))
        return logits


def build_generator(model_type: str, **kwargs) -> nn.Module:
    """``"proposed"`` -> :class:`RadiogenomicGenerator`, ``"baseline"`` -> :class:`MCGANGenerator`; the other
    kwargs go to either (the proposed generator's own settings ``fusion``, ``code_gradient``, ``lung_gate``,
    ``psf_sigma``, ``object_sigma`` and ``image_fusion`` are ignored by the baseline, so one network record serves both)."""
    if model_type == "proposed":
        return RadiogenomicGenerator(**kwargs)
    if model_type == "baseline":
        for key in ("fusion", "code_gradient", "lung_gate", "psf_sigma", "object_sigma", "image_fusion"):
            kwargs.pop(key, None)
        return MCGANGenerator(**kwargs)
    raise ValueError(f"model_type must be one of ['baseline', 'proposed'], got {model_type!r}")
