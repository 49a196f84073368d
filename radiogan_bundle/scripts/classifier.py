"""A small CNN classifier of 2D images: the judge of conditional generators and the utility study's model.

Trained on the real training images, it judges generated ones: conditional accuracy (does a generated image
of class c look like class c?) and the realism confidence of latent-walk frames (its top softmax probability).
The utility studies (``bundles/workflows/*_utility.py``) train it on real, synthetic or mixed images for a
fixed number of steps (:func:`train_classifier` with ``steps``), so that the arms of a study differ only in
their data. Fidelity and memorisation are measured by the metric registry
(:mod:`gan_core.evaluation.metrics`), not in this network's feature space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["ImageClassifier", "conditional_accuracy", "predict", "recalibrate_batchnorm", "train_classifier"]


class ImageClassifier(nn.Module):
    """Images (B, 1, S0, S1) in [-1, 1] -> class logits (B, num_classes); :meth:`features` gives (B, F).

    Four blocks of conv 3 x 3 + BN + ReLU + 2 x 2 max-pooling (channels ``width * (1, 2, 4, 4)``), global
    average pooling to ``F = 4 * width`` features, then a linear layer. Works for any image of >= 16 x 16.

    Args:
        smooth_px: when > 0, every input is first smoothed by a fixed Gaussian of this standard deviation
            (pixels, edges replicated): the network then sees the layout of uptake and lesions but not fine
            texture, in training and at test alike (0: no smoothing).
    """

    def __init__(self, num_classes: int = 5, width: int = 16, smooth_px: float = 0.0):
        super().__init__()
        self.smooth_px = float(smooth_px)
        if self.smooth_px > 0:
            radius = max(1, math.ceil(2.5 * self.smooth_px))
            t = torch.arange(-radius, radius + 1, dtype=torch.float32)
            g = torch.exp(-(t**2) / (2 * self.smooth_px**2))
            g = g / g.sum()
            self.register_buffer("kernel", (g[:, None] * g[None, :])[None, None])
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
        if self.smooth_px > 0:
            r = self.kernel.shape[-1] // 2
            images = nn.functional.conv2d(nn.functional.pad(images, (r, r, r, r), mode="replicate"), self.kernel)
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
    smooth_px: float = 0.0,
    epochs: int = 30,
    steps: int | None = None,
    weights: torch.Tensor | None = None,
    batch_size: int = 16,
    lr: float = 1e-3,
    max_shift: int = 2,
    speckle: float = 0.3,
    seed: int = 0,
) -> ImageClassifier:
    """Train an :class:`ImageClassifier`; returns it in eval mode (on the images' device).

    Args:
        images: (N, 1, S0, S1) float in [-1, 1].
        labels: (N,) int64 class indices.
        smooth_px: the network's fixed input smoothing (:class:`ImageClassifier`).
        epochs: passes over the data (Adam, cross-entropy, shuffled with ``seed``); used when ``steps`` is None.
        steps: train exactly this many minibatches of ``batch_size`` images instead, each drawn with replacement
            with probability proportional to ``weights``. Two trainings with the same ``steps`` do the same
            number of updates whatever their data size, as the arms of a utility study must.
        weights: (N,) non-negative sampling weights for ``steps`` (default: uniform), e.g. to give the real
            images half of every batch however many synthetic images are added.
        max_shift: random circular shifts of up to this many pixels per axis, so the classifier judges
            content rather than exact pixel positions.
        speckle: largest amplitude (in the [-1, 1] intensity scale) of the smooth random speckle added to
            each training image, so that the classifier judges the layout of uptake or lesions rather than
            the fine texture in which generated images differ from real ones (0 turns it off). Texture
            realism is measured separately (the metric registry's FID, KID and precision).
    """
    if images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images must be (N, 1, S0, S1) matching labels (N,), got {tuple(images.shape)}")
    n = images.shape[0]
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if weights.shape != (n,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be (N,) = ({n},) non-negative with a positive sum")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageClassifier(num_classes=num_classes, width=width, smooth_px=smooth_px).to(images.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for idx in _batches(n, batch_size, epochs, steps, weights, gen):
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
def recalibrate_batchnorm(model: ImageClassifier, images: torch.Tensor, *, batches: int = 20, batch_size: int = 16,
                          seed: int = 0) -> ImageClassifier:
    """Replace the running mean and variance of every BatchNorm layer of ``model`` by their average over
    ``batches`` minibatches of ``batch_size`` of ``images`` (N, 1, S0, S1), drawn with replacement, without
    augmentation; the weights are untouched. Returns the model in eval mode.

    A classifier trained on a mixture normalises test images with the mixture's statistics; recalibrated on
    the real images it trained on, it normalises them as a real-only classifier would (Li et al. 2016, AdaBN,
    with the training domain's own images rather than the test images).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(int(batches)):
        model(images[torch.randint(0, images.shape[0], (min(batch_size, images.shape[0]),), generator=gen)])
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum  # as before, should the model be trained further
    return model.eval()


def _batches(n: int, batch_size: int, epochs: int, steps: int | None, weights: torch.Tensor | None,
             gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches: ``epochs`` shuffled passes (batches of one image skipped: BatchNorm needs two), or
    exactly ``steps`` batches of ``batch_size`` indices drawn with replacement, proportional to ``weights``."""
    if steps is None:
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                if idx.numel() >= 2:
                    yield idx
        return
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (BatchNorm)")
    p = torch.ones(n, dtype=torch.float64) if weights is None else weights
    for _ in range(int(steps)):
        yield torch.multinomial(p, batch_size, replacement=True, generator=gen)


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


def conditional_accuracy(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str], *,
                         num_bootstrap: int = 0, seed: int = 0) -> dict:
    """Per-class and class-averaged accuracy of ``argmax(probs)`` against the requested ``labels``.

    Returns ``{"per_class": {name: accuracy or None when the class has no images}, "mean": mean over the
    classes that have images, "ci95": interval of "mean" or None, "overall": accuracy over all images}``.
    With ``num_bootstrap`` > 0, ``ci95`` is the percentile bootstrap interval of the class mean, the images
    resampled within each class (the classes keep their counts).
    """
    from gan_core.evaluation.metrics import bootstrap_ci

    pred = probs.argmax(dim=1)
    labels = labels.to(pred.device)
    per_class: dict[str, float | None] = {}
    correct: list[np.ndarray] = []
    for c, name in enumerate(class_names):
        mask = labels == c
        hits = (pred[mask] == c).cpu().numpy().astype(np.float64)
        per_class[name] = float(hits.mean()) if hits.size else None
        if hits.size:
            correct.append(hits)
    ci = None
    if num_bootstrap > 0 and correct:
        ci = bootstrap_ci(lambda *idx: np.mean([h[i].mean(axis=1) for h, i in zip(correct, idx, strict=True)], axis=0),
                          [h.size for h in correct], num_resamples=num_bootstrap, seed=seed)
    return {
        "per_class": per_class,
        "mean": float(np.mean([h.mean() for h in correct])) if correct else float("nan"),
        "ci95": ci,
        "overall": float((pred == labels).float().mean()),
    }
