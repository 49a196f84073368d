"""A small CNN classifier of 2D images and the numbers computed in its feature space.

One network, trained on the real training images, serves four evaluations: conditional accuracy (does a
generated image of class c look like class c?), realism confidence of latent-walk frames (its top softmax
probability), the feature-space memorisation audit (its penultimate features) and an FID-style distance
(MONAI's :class:`~monai.metrics.FIDMetric` on those features instead of Inception's).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import FIDMetric
from torch import nn

__all__ = ["ImageClassifier", "conditional_accuracy", "feature_fid", "predict", "train_classifier"]


class ImageClassifier(nn.Module):
    """Images (B, 1, S0, S1) in [-1, 1] -> class logits (B, num_classes); :meth:`features` gives (B, F).

    Four blocks of conv 3 x 3 + BN + ReLU + 2 x 2 max-pooling (channels ``width * (1, 2, 4, 4)``), global
    average pooling to ``F = 4 * width`` features, then a linear layer. Works for any image of >= 16 x 16.
    """

    def __init__(self, num_classes: int = 5, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for mult in (1, 2, 4, 4):
            layers += [
                nn.Conv2d(in_ch, width * mult, kernel_size=3, padding=1),
                nn.BatchNorm2d(width * mult),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_ch = width * mult
        self.body = nn.Sequential(*layers)
        self.num_features = in_ch
        self.head = nn.Linear(in_ch, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, S0, S1) -> globally pooled features (B, F)."""
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, S0, S1) -> logits (B, num_classes)."""
        return self.head(self.features(images))


def add_speckle(x: torch.Tensor, amplitude: float, gen: torch.Generator) -> torch.Tensor:
    """``x`` (B, 1, H, W) in [-1, 1] plus non-negative, spatially correlated noise of a random amplitude in
    [0, ``amplitude``] per image, clipped to [-1, 1]."""
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    noise = nn.functional.avg_pool2d(noise, 3, stride=1, padding=1).abs()
    noise = noise / noise.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    scale = torch.rand(x.shape[0], 1, 1, 1, generator=gen).to(x.device) * amplitude
    return (x + 2 * scale * noise).clamp(-1, 1)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int = 5,
    width: int = 16,
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 1e-3,
    max_shift: int = 2,
    speckle: float = 0.3,
    seed: int = 0,
) -> ImageClassifier:
    """Train an :class:`ImageClassifier` on real images; returns it in eval mode (on the images' device).

    Args:
        images: (N, 1, S0, S1) float in [-1, 1].
        labels: (N,) int64 class indices.
        epochs: passes over the data (Adam, cross-entropy, shuffled with ``seed``).
        max_shift: random circular shifts of up to this many pixels per axis, so the classifier judges
            content rather than exact pixel positions.
        speckle: largest amplitude (in the [-1, 1] intensity scale) of the smooth random speckle added to
            each training image, so that the classifier judges the layout of uptake or lesions rather than
            the fine texture in which generated images differ from real ones (0 turns it off). Texture
            realism is measured separately (feature FID, memorisation audit).
    """
    if images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images must be (N, 1, S0, S1) matching labels (N,), got {tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageClassifier(num_classes=num_classes, width=width).to(images.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = images.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            x = images[idx]
            if max_shift > 0:
                s0, s1 = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(s0, s1), dims=(2, 3))
            if speckle > 0:
                x = add_speckle(x, speckle, gen)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), labels[idx].to(images.device))
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: ImageClassifier, images: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 1, S0, S1) -> (softmax probabilities (N, C), features (N, F)), both float32 on the CPU."""
    model.eval()
    probs, feats = [], []
    for start in range(0, images.shape[0], batch_size):
        f = model.features(images[start : start + batch_size])
        probs.append(torch.softmax(model.head(f), dim=1).cpu())
        feats.append(f.cpu())
    return torch.cat(probs), torch.cat(feats)


def conditional_accuracy(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """Per-class and class-averaged accuracy of ``argmax(probs)`` against the requested ``labels``.

    Returns ``{"per_class": {name: accuracy or None when the class has no images}, "mean": mean over the
    classes that have images, "overall": accuracy over all images}``.
    """
    pred = probs.argmax(dim=1)
    labels = labels.to(pred.device)
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        per_class[name] = float((pred[mask] == c).float().mean()) if bool(mask.any()) else None
    present = [v for v in per_class.values() if v is not None]
    return {
        "per_class": per_class,
        "mean": float(np.mean(present)) if present else float("nan"),
        "overall": float((pred == labels).float().mean()),
    }


def feature_fid(features_generated: torch.Tensor, features_real: torch.Tensor) -> float:
    """Frechet distance between two sets of classifier features (N, F) and (M, F), via MONAI's FIDMetric.

    With fewer images than features the covariances are rank deficient; the value is then still a
    distance between the fitted Gaussians but a noisy one, so compare it only between runs of equal N.
    """
    if features_generated.shape[0] < 2 or features_real.shape[0] < 2:
        raise ValueError("FID needs at least two feature vectors on each side.")
    return float(FIDMetric()(features_generated.double(), features_real.double()).real)
