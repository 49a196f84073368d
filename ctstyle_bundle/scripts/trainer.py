"""ctstyle trainer: cGAN from label map to CT with per-segment VGG style, content and TV losses."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from torch import nn
from torch.nn import functional as F

from gan_core.engines.gan_trainer import AdversarialTrainer
from gan_core.losses import (
    content_distances,
    discriminator_bce,
    generator_bce,
    mode_seeking,
    segment_grams,
    style_distances,
    total_variation,
)
from gan_core.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGG19Features

__all__ = ["CTStyleTrainer", "map_to_display"]


def map_to_display(onehot: torch.Tensor) -> torch.Tensor:
    """(B, S, H, W) one-hot -> (B, 1, H, W) gray map in [-1, 1] (segment index s -> -1 + 2 s / (S - 1))."""
    s = onehot.shape[1]
    index = onehot.argmax(1, keepdim=True).to(onehot.dtype)
    return index * (2.0 / max(s - 1, 1)) - 1.0


def _plain(t) -> torch.Tensor:
    return t.as_tensor() if isinstance(t, MetaTensor) else torch.as_tensor(t)


class CTStyleTrainer(AdversarialTrainer):
    """Krishna & Mueller's training: G(y, z) must fool D(., y) and match, segment by segment, the texture
    (Gram matrices) of ONE fixed style CT and the content (relu4_2 features) of the CT that belongs to y.

    Batches hold ``"image"``: the content image x_o, the CT of the map, (B, 1, H, W) scaled to [-1, 1];
    ``"label"``: its map as one-hot (B, 6, H, W). The style image x_s is fixed for the whole training: a CT
    of another patient with its own one-hot map (the paper trains one generator per style image); its
    per-segment Grams are computed once. Loss terms (``"loss"`` dict):

    - ``d_total`` = eq. (9): BCE(D(x_o, y), 1) + BCE(D(G(y, z), y), 0);
    - ``g_adv`` = BCE(D(G(y, z), y), 1) (the -log D of eq. 8), ``g_style`` = L_s (eq. 6, style layers),
      ``g_content`` = L_c (eq. 7, content layers), ``g_tv`` = L_tv (eq. 5, divided by the pixel count so
      the weight does not depend on the image size);
    - ``g_mode_seeking`` (only when ``w_ms > 0``): MSGAN's term (Mao et al. 2019,
      :func:`~gan_core.losses.mode_seeking`) between G(y, z) and a second image G(y, z2) of the same
      map. Without it the generator learns to ignore z (pix2pix-style collapse: seeds give the same CT).
      The second image is made in the same generator call (a batch of 2B) and enters only this term; the
      style, content, TV and adversarial terms are taken on the first, whose z is random anyway;
    - ``g_total`` = w_adv g_adv + w_s g_style + w_c g_content + w_tv g_tv + w_ms g_mode_seeking.

    The per-epoch sample grid shows map | content image | style image | generated (| generated, 2nd z).

    Args (besides :class:`AdversarialTrainer`'s):
        vgg: the frozen feature network (:class:`~gan_core.vgg.VGG19Features`).
        style_image: (1, 1, H, W) style CT in [-1, 1]; style_label: its (1, 6, H, W) one-hot map.
        w_s, w_c, w_tv, w_adv, w_ms: loss weights (``w_ms`` 0: no mode-seeking term and no second image,
            the paper's training).
        noise_dim: length of z.
        style_layers, content_layers: VGG layer names.
        loss_size: side to which images and masks are area-downsampled before the VGG (``None``: full
            size). The VGG costs most of an iteration; a smaller ``loss_size`` trades fine texture for time.
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
        vgg: VGG19Features,
        style_image: torch.Tensor,
        style_label: torch.Tensor,
        w_s: float = 1.0,
        w_c: float = 1.0,
        w_tv: float = 1.0,
        w_adv: float = 1.0,
        w_ms: float = 0.0,
        noise_dim: int = 200,
        style_layers: Sequence[str] = STYLE_LAYERS,
        content_layers: Sequence[str] = CONTENT_LAYERS,
        loss_size: int | None = None,
        **kwargs,
    ):
        super().__init__(
            device, max_epochs, train_data_loader, generator, discriminator, g_optimizer, d_optimizer, **kwargs
        )
        self.vgg = vgg.to(self.state.device)
        self.w_s, self.w_c, self.w_tv, self.w_adv = float(w_s), float(w_c), float(w_tv), float(w_adv)
        self.w_ms = float(w_ms)
        self.noise_dim = int(noise_dim)
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self.loss_size = None if loss_size is None else int(loss_size)
        self.style_image = _plain(style_image).float().reshape(1, 1, *style_image.shape[-2:]).to(self.state.device)
        self.style_label = _plain(style_label).float().reshape(1, -1, *style_label.shape[-2:]).to(self.state.device)
        self._content_cache: dict[str, dict[str, torch.Tensor]] = {}
        with torch.no_grad():
            image, masks = self.loss_inputs(self.style_image, self.style_label)
            self.style_grams = segment_grams(self.vgg(image), masks, self.style_layers)

    def loss_inputs(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and masks at ``loss_size`` (area averaging), as the VGG sees them."""
        if self.loss_size is None or image.shape[-1] == self.loss_size:
            return image, masks
        size = (self.loss_size, self.loss_size)
        return F.adaptive_avg_pool2d(image, size), F.adaptive_avg_pool2d(masks, size)

    def prepare(self, batchdata: dict) -> dict[str, torch.Tensor]:
        """Keep ``image`` (B, 1, H, W) and ``label`` (B, 6, H, W) as float tensors on the device."""
        device, nb = self.state.device, self.non_blocking
        return {k: _plain(batchdata[k]).float().to(device, non_blocking=nb) for k in ("image", "label")}

    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``image`` (B, 1, H, W) = G(y, z), z (B, noise_dim); with ``w_ms > 0`` also ``image_2`` = G(y, z_2)."""
        label = batch["label"]
        b = label.shape[0]
        copies = 2 if self.w_ms > 0 else 1
        z = torch.randn(copies * b, self.noise_dim, device=label.device)
        images = self.generator(label.repeat(copies, 1, 1, 1), z)
        fake = {"image": images[:b], "z": z[:b]}
        if copies == 2:
            fake.update(image_2=images[b:], z_2=z[b:])
        return fake

    def discriminator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        real_logit = self.discriminator(batch["image"], batch["label"])
        fake_logit = self.discriminator(fake["image"], batch["label"])
        return {"d_total": discriminator_bce(real_logit, fake_logit)}

    @torch.no_grad()
    def content_features(self, content: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content-layer features of the content images, computed once per distinct image and cached (the
        training images never change, and this saves a quarter of the VGG work of an iteration)."""
        image = self.loss_inputs(content, label)[0]
        out = []
        for i in range(image.shape[0]):
            key = hashlib.sha1(image[i].detach().cpu().numpy().tobytes()).hexdigest()
            if key not in self._content_cache:
                feats = self.vgg(image[i : i + 1])
                self._content_cache[key] = {k: feats[k] for k in self.content_layers}
            out.append(self._content_cache[key])
        return {k: torch.cat([o[k] for o in out]) for k in self.content_layers}

    def perceptual_terms(self, generated: torch.Tensor, content: torch.Tensor, label: torch.Tensor):
        """(style (B,), content (B,)) per-segment losses of generated images against the fixed style
        image and their content images."""
        gen, masks = self.loss_inputs(generated, label)
        feats = self.vgg(gen)
        content_feats = self.content_features(content, label)
        style = style_distances(segment_grams(feats, masks, self.style_layers), self.style_grams).sum(1)
        content_term = content_distances(feats, content_feats, masks, self.content_layers).sum(1)
        return style, content_term

    def generator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        generated = fake["image"]
        logit = self.discriminator(generated, batch["label"])
        g_adv = generator_bce(logit)
        style, content = self.perceptual_terms(generated, batch["image"], batch["label"])
        g_style, g_content = style.mean(), content.mean()
        g_tv = total_variation(generated).mean() / generated[0].numel()
        terms = {"g_adv": g_adv, "g_style": g_style, "g_content": g_content, "g_tv": g_tv}
        g_total = self.w_adv * g_adv + self.w_s * g_style + self.w_c * g_content + self.w_tv * g_tv
        if self.w_ms > 0:
            terms["g_mode_seeking"] = mode_seeking(generated, fake["image_2"], fake["z"], fake["z_2"]).mean()
            g_total = g_total + self.w_ms * terms["g_mode_seeking"]
        return {**terms, "g_total": g_total}

    def sample_columns(self, batch: dict, fake: dict) -> list[tuple[str, torch.Tensor]]:
        b = batch["image"].shape[0]
        columns = [
            ("map", map_to_display(batch["label"])),
            ("content image", batch["image"]),
            ("style image", self.style_image.expand(b, -1, -1, -1)),
            ("generated", fake["image"]),
        ]
        if "image_2" in fake:
            columns.append(("generated, 2nd z", fake["image_2"]))
        return columns
