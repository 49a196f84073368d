"""One vocabulary of evaluation metrics for the three bundles: each metric a function registered by name.

After StyleGAN2-ADA's ``metrics/metric_main.py``: :func:`register_metric` adds a function to the registry,
:func:`compute_metrics` runs a list of names on one :class:`SampleSets` and returns every result in the same
shape, :func:`write_metrics_json` writes them. Every result is a dict with the keys :data:`RESULT_KEYS`::

    {"value": float | None,            # the estimate on all samples
     "ci95": [lo, hi] | None,          # 95 % interval (how: details["ci_method"])
     "reference": {"value", "ci95", "what"} | None,  # what a reader compares the value with
     "n": {set name: count},           # the sample counts behind value and reference
     "target": "lower" | "higher" | "near_reference" | "at_least_reference",
     "read_with": [metric names],      # numbers without which this one misleads
     "details": {...}}                 # settings and per-item / per-condition numbers

Registered metrics (definitions, references and intervals in ``METRICS.md`` beside this file):
``fid``, ``kid`` (features, generated vs held-out real, real-vs-real floor beside), ``precision``,
``recall``, ``density``, ``coverage`` (k-NN manifolds of the features), ``ms_ssim_diversity`` (pairwise
MS-SSIM within a condition, beside the real images' own), ``memorisation_pixel`` and
``memorisation_features`` (nearest-training-image distance ratio, with the closest pairs and flagged copies).

Feature-space metrics standardise every feature with the mean and standard deviation of the real images
(training + held-out) first, so no feature dominates by its scale; see :meth:`SampleSets.standardised`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

from gan_core.errors import BundleInputError
from gan_core.evaluation.features import (
    DEFAULT_EXTRACTOR,
    FeatureExtractor,
    extractor_name,
    get_extractor,
)
from gan_core.figures import plt, save_figure, to_display
from gan_core.fileio import atomic_write_text

__all__ = [
    "MS_SSIM_KERNEL_SIGMA",
    "MS_SSIM_KERNEL_SIZE",
    "MS_SSIM_MIN_SIDE",
    "MS_SSIM_WEIGHTS",
    "RESULT_KEYS",
    "SampleSets",
    "bootstrap_ci",
    "check_metrics",
    "compute_metrics",
    "derived_seed",
    "format_result",
    "list_metrics",
    "metric_reference",
    "metric_result",
    "pairwise_ms_ssim",
    "reference_train_indices",
    "register_metric",
    "save_closest_pairs",
    "write_metrics_json",
]

logger = logging.getLogger(__name__)

RESULT_KEYS: tuple[str, ...] = ("value", "ci95", "reference", "n", "target", "read_with", "details")
SET_NAMES: tuple[str, ...] = ("generated", "train", "heldout")

# MS-SSIM at three scales (full, 1/2, 1/4 resolution) with a 7 x 7 Gaussian window (sigma 1.0): the
# smallest side at the coarsest scale is 32 / 4 = 8 px for 32 x 32 patches, still wider than the window.
# Weights: Wang, Simoncelli & Bovik (2003)'s first three scale weights, renormalised to sum to 1.
MS_SSIM_KERNEL_SIZE = 7
MS_SSIM_KERNEL_SIGMA = 1.0
_WANG_WEIGHTS = (0.0448, 0.2856, 0.3001)
MS_SSIM_WEIGHTS: tuple[float, ...] = tuple(w / sum(_WANG_WEIGHTS) for w in _WANG_WEIGHTS)
# MONAI's MultiScaleSSIMMetric requires side // (scales - 1) ** 2 > kernel_size - 1, i.e. side >= 7 * 4 = 28
# here (for three scales (scales - 1) ** 2 = 4 is also the true down-sampling factor of the coarsest scale).
MS_SSIM_MIN_SIDE = MS_SSIM_KERNEL_SIZE * (len(MS_SSIM_WEIGHTS) - 1) ** 2
# Range of the input images: [-1, 1] with a small tolerance for interpolation overshoot.
_RANGE_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------------------------------------
# Inputs


def _as_images(x: Any, name: str) -> torch.Tensor:
    """Check one image set: (n, 1, H, W), n >= 2, finite, in [-1, 1]; returned as a float32 tensor."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise BundleInputError(f"cannot read the {name} images as an array ({exc})", field=name, hint='pass (N, 1, H, W) tensors in [-1, 1]') from exc
    if x.ndim != 4 or x.shape[1] != 1:
        raise BundleInputError(f"{name} images have shape {tuple(x.shape)}", field=name,
                               hint="give a (n, 1, H, W) batch of single-channel 2D images")
    if x.shape[0] < 2:
        raise BundleInputError(f"{x.shape[0]} {name} image(s): every metric needs at least two", field=name, hint="generate more images, or check the datalist's held-out split")
    x = x.detach().float()
    if not bool(torch.isfinite(x).all()):
        raise BundleInputError(f"the {name} images contain NaN or infinite values", field=name, hint='check the generator and the inputs for NaN values')
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise BundleInputError(f"{name} images range over [{lo:.3g}, {hi:.3g}]", field=name,
                               hint="scale images to [-1, 1] (the generators' tanh range) before evaluating")
    return x


def _as_conditions(c: Any, n: int, name: str) -> np.ndarray:
    """Check one condition vector: (n,) integers -> int64 array."""
    arr = c.detach().cpu().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)
    if arr.shape != (n,):
        raise BundleInputError(f"{name} has shape {arr.shape}, expected ({n},): one integer per image", field=name, hint='give one integer condition per image')
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise BundleInputError(f"{name} holds non-integer values", field=name,
                               hint="give class / phenotype / label-map ids as integers")
    return arr.astype(np.int64)


@dataclass(eq=False)
class SampleSets:
    """The images every metric sees, with their conditions and the (cached) features.

    Args:
        generated: (N, 1, H, W) generated images, float in [-1, 1].
        train: (M, 1, H, W) real TRAINING images (the generator saw them).
        heldout: (K, 1, H, W) real HELD-OUT images (never trained on), same H, W.
        generated_conditions, train_conditions, heldout_conditions: optional (N,) / (M,) / (K,) integer
            condition of each image (class, phenotype, label-map id); all three or none.
        extractor: a registered extractor name (:func:`gan_core.evaluation.features.list_extractors`) or a
            callable images (B, 1, H, W) in [-1, 1] -> (B, F) features (e.g. a bundle's judging
            classifier); a ``name`` attribute on it is recorded in the results. Each set is embedded once.

    Raises:
        BundleInputError: wrong shapes, fewer than two images in a set, values outside [-1, 1], sizes that
        differ between sets, conditions given for some sets only.
    """

    generated: torch.Tensor
    train: torch.Tensor
    heldout: torch.Tensor
    generated_conditions: torch.Tensor | Sequence[int] | np.ndarray | None = None
    train_conditions: torch.Tensor | Sequence[int] | np.ndarray | None = None
    heldout_conditions: torch.Tensor | Sequence[int] | np.ndarray | None = None
    extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.generated = _as_images(self.generated, "generated")
        self.train = _as_images(self.train, "train")
        self.heldout = _as_images(self.heldout, "heldout")
        sizes = {name: tuple(getattr(self, name).shape[2:]) for name in SET_NAMES}
        if len(set(sizes.values())) > 1:
            raise BundleInputError(f"image sizes differ between the sets: {sizes}", field="images",
                                   hint="generate at the training resolution, or resample all sets to one size")
        given = [c is not None for c in (self.generated_conditions, self.train_conditions, self.heldout_conditions)]
        if any(given) and not all(given):
            missing = [f"{n}_conditions" for n, g in zip(SET_NAMES, given, strict=True) if not g]
            raise BundleInputError(f"conditions given for some sets only (missing: {', '.join(missing)})",
                                   field=missing[0], hint="give conditions for all three sets, or for none")
        if all(given):
            self.generated_conditions = _as_conditions(self.generated_conditions, self.generated.shape[0],
                                                       "generated_conditions")
            self.train_conditions = _as_conditions(self.train_conditions, self.train.shape[0], "train_conditions")
            self.heldout_conditions = _as_conditions(self.heldout_conditions, self.heldout.shape[0],
                                                     "heldout_conditions")
        if isinstance(self.extractor, str):
            get_extractor(self.extractor)  # unknown name -> BundleInputError now, not inside a metric

    @property
    def has_conditions(self) -> bool:
        """Whether the sets carry conditions."""
        return self.generated_conditions is not None

    @property
    def extractor_name(self) -> str:
        """The name of the feature extractor, as recorded in the results."""
        return extractor_name(self.extractor)

    def sizes(self) -> dict[str, int]:
        """{"generated": N, "train": M, "heldout": K}."""
        return {name: int(getattr(self, name).shape[0]) for name in SET_NAMES}

    def images(self, which: str) -> torch.Tensor:
        """The (n, 1, H, W) images of set ``which`` ("generated", "train" or "heldout")."""
        if which not in SET_NAMES:
            raise KeyError(which)
        return getattr(self, which)

    def conditions(self, which: str) -> np.ndarray | None:
        """The (n,) int64 conditions of set ``which``, or None."""
        return getattr(self, f"{which}_conditions")

    def features(self, which: str) -> np.ndarray:
        """(n, F) float64 features of set ``which``, computed once with the extractor."""
        key = ("features", which)
        if key not in self._cache:
            fn = get_extractor(self.extractor) if isinstance(self.extractor, str) else self.extractor
            start = time.perf_counter()
            with torch.no_grad():
                feats = fn(self.images(which))
            feats = torch.as_tensor(feats).detach().cpu().double().numpy()
            n = self.images(which).shape[0]
            if feats.ndim != 2 or feats.shape[0] != n:
                raise BundleInputError(f"extractor {self.extractor_name} returned shape {feats.shape} for {n} images",
                                       field="extractor", hint="an extractor maps (B, 1, H, W) to (B, F)")
            if not np.isfinite(feats).all():
                raise BundleInputError(f"extractor {self.extractor_name} returned NaN/inf features for the {which} "
                                       "images", field="extractor", hint="check the extractor's weights and its input range")
            logger.info("features %s of %d %s images: %.1f s", self.extractor_name, n, which,
                        time.perf_counter() - start)
            self._cache[key] = feats
        return self._cache[key]

    def standardised(self, which: str) -> np.ndarray:
        """(n, F) features of set ``which``, each feature centred on the real images' mean and divided by
        ``sqrt(sd ** 2 + (0.1 * rms(sd)) ** 2)`` (sd: its standard deviation over training + held-out;
        rms(sd): over all features), so a feature that is nearly constant in real images cannot dominate."""
        key = ("standardised", which)
        if key not in self._cache:
            real = np.concatenate([self.features("train"), self.features("heldout")])
            mean, sd = real.mean(axis=0), real.std(axis=0)
            floor = 0.1 * math.sqrt(float(np.mean(sd**2)))
            scale = np.sqrt(sd**2 + floor**2) if floor > 0 else np.ones_like(sd)
            self._cache[key] = (self.features(which) - mean) / scale
        return self._cache[key]


def reference_train_indices(sets: SampleSets, seed: int) -> np.ndarray:
    """Indices of the training images that play "generated" in the real-vs-real references: a random
    subset (from ``seed``) of min(M, N) of them, so the reference rests on as many samples as the value."""
    sizes = sets.sizes()
    m = min(sizes["train"], sizes["generated"])
    rng = np.random.default_rng(derived_seed(seed, "reference_train"))
    return np.sort(rng.choice(sizes["train"], size=m, replace=False))


def derived_seed(seed: int, tag: str) -> int:
    """A seed for one purpose: the same (seed, tag) always gives the same number, different tags differ."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(tag.encode())]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------------------
# Intervals


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    sizes: Sequence[int],
    *,
    num_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    method: str = "percentile",
    estimate: float | None = None,
    chunk: int = 100,
) -> list[float] | None:
    """Resampling interval of a statistic of one or more samples (resampled independently).

    ``statistic(*indices)`` receives one int array of shape (B, n_i) per sample (row b: the items of
    resample b) and returns (B,) values; it is called in chunks of ``chunk`` resamples.

    Args:
        sizes: the size n_i of each sample.
        num_resamples: number of resamples B.
        seed: the resamples are a fixed function of it.
        level: coverage of the interval (0.95 -> 2.5th and 97.5th percentiles).
        method: ``"percentile"``: bootstrap (n_i draws with replacement), interval = percentiles of the
            resampled statistics t_b (Efron's percentile interval). ``"centred"``: the same resamples,
            interval = ``estimate + percentiles(t_b - mean(t))``: the bootstrap spread placed around the
            estimate, for statistics whose small-sample bias the duplicates of a resample enlarge (FID:
            its resamples are shifted upwards, so their percentiles can miss the estimate entirely).
            ``"half"``: half-sampling, for statistics that duplicates would bias (unbiased U-statistics
            such as KID): subsets of ceil(n_i / 2) items drawn without replacement; their spread around
            their own mean approximates the spread of the full-sample estimate (the doubled variance at
            half size and the finite-population factor 1 - m / n = 1/2 cancel), so the interval is
            ``estimate + percentiles(t_b - mean(t))``.
        estimate: the full-sample value; required with ``"centred"`` and ``"half"``.

    Returns:
        ``[lo, hi]``, or None when fewer than half of the resampled statistics are finite (e.g. a sample too
        small to resample).
    """
    if method not in ("percentile", "centred", "half"):
        raise ValueError(f"unknown method {method!r}")
    if method != "percentile" and estimate is None:
        raise ValueError(f"method={method!r} needs the full-sample estimate")
    sizes = [int(n) for n in sizes]
    if num_resamples < 1 or any(n < 1 for n in sizes):
        return None
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, num_resamples, chunk):
        b = min(chunk, num_resamples - start)
        if method in ("percentile", "centred"):
            idx = [rng.integers(0, n, size=(b, n)) for n in sizes]
        else:
            idx = [np.argsort(rng.random((b, n)), axis=1)[:, : max(1, math.ceil(n / 2))] for n in sizes]
        values.append(np.asarray(statistic(*idx), dtype=np.float64).reshape(b))
    t = np.concatenate(values)
    t = t[np.isfinite(t)]
    if t.size < max(1, num_resamples // 2):
        return None
    q = 100.0 * np.array([(1 - level) / 2, (1 + level) / 2])
    if method == "percentile":
        lo, hi = np.percentile(t, q)
    else:
        lo, hi = estimate + np.percentile(t - t.mean(), q)
    return [float(lo), float(hi)]


def _mean_ci(items: np.ndarray, num_resamples: int, seed: int) -> list[float] | None:
    """Percentile-bootstrap interval of the mean of per-item values (n,)."""
    items = np.asarray(items, dtype=np.float64)
    return bootstrap_ci(lambda i: items[i].mean(axis=1), (items.size,), num_resamples=num_resamples, seed=seed)


# ----------------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class _MetricSpec:
    name: str
    fn: Callable[..., dict]
    description: str


_REGISTRY: dict[str, _MetricSpec] = {}


def register_metric(name: str, description: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Decorator adding ``fn(sets, *, seed, num_bootstrap, **options) -> result dict`` to the registry.

    ``seed`` is the caller's seed: derive the metric's own random stream from it (:func:`derived_seed`)
    and take the real-vs-real reference subset from :func:`reference_train_indices`.
    The function returns a dict with exactly the keys :data:`RESULT_KEYS` (build it with
    :func:`metric_result`, the reference with :func:`metric_reference`);
    its keyword options (with defaults) can be set per metric through ``compute_metrics(options=...)``.
    A bundle may register its own metric (e.g. conditional accuracy) the same way.
    """

    def decorator(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"metric {name!r} is already registered")
        _REGISTRY[name] = _MetricSpec(name, fn, description)
        return fn

    return decorator


def list_metrics() -> dict[str, str]:
    """Registered metric names -> one-line descriptions, in registration order."""
    return {name: spec.description for name, spec in _REGISTRY.items()}


def _check_names(names: Sequence[str], options: dict | None) -> list[str]:
    """The requested names without repeats; BundleInputError for unknown names or options."""
    if isinstance(names, str):
        names = [names]
    known = ", ".join(_REGISTRY)
    unique: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in _REGISTRY:
            raise BundleInputError(f"unknown metric {name!r}", field="metrics", hint=f"known metrics: {known}")
        if name not in unique:
            unique.append(name)
    for name, opts in (options or {}).items():
        if name not in unique:
            raise BundleInputError(f"options given for metric {name!r}, which is not computed", field="metric_options",
                                   hint=f"computed metrics: {', '.join(unique)}")
        params = inspect.signature(_REGISTRY[name].fn).parameters
        accepted = [p for p in params if p not in ("sets", "seed", "num_bootstrap")]
        wrong = [k for k in opts if k not in accepted]
        if wrong:
            raise BundleInputError(f"unknown option(s) {wrong} of metric {name!r}", field="metric_options",
                                   hint=f"options of {name}: {', '.join(accepted) or 'none'}")
    return unique


def check_metrics(names: Sequence[str], options: dict[str, dict[str, Any]] | None = None,
                  num_bootstrap: int | None = None) -> list[str]:
    """Check metric names, options and the number of resamples before any work (a config's ``initialize``);
    returns the names without repeats.

    Raises:
        BundleInputError: an unknown name (the message lists the known ones), options of a metric that is not
        computed, an option the metric does not take, or ``num_bootstrap`` not an integer >= 1.
    """
    if num_bootstrap is not None and (isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int)
                                      or num_bootstrap < 1):
        raise BundleInputError(f"must be an integer >= 1, got {num_bootstrap!r}", field="num_bootstrap",
                               hint="pass --num_bootstrap 1000")
    if options is not None and not isinstance(options, dict):
        raise BundleInputError(f"metric options must be a mapping, got {type(options).__name__}",
                               field="metric_options", hint='pass e.g. {"precision": {"k": 5}}')
    return _check_names(names, options)


def compute_metrics(
    names: Sequence[str],
    sets: SampleSets,
    *,
    seed: int = 0,
    num_bootstrap: int = 1000,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict]:
    """Compute the named metrics on ``sets``; returns ``{name: result}`` in the order asked.

    Args:
        names: registered metric names (:func:`list_metrics`); all are checked before any is computed.
        seed: every random choice (bootstrap resamples, subsets, pair samples) is a fixed function of it;
            each metric draws from its own stream (seeded by the seed and its name), so adding a metric to
            the list changes no other number; the real-vs-real references share one training subset.
        num_bootstrap: resamples of every interval.
        options: per-metric keyword options, e.g. ``{"precision": {"k": 5}}``.

    Raises:
        BundleInputError: an unknown metric name (the message lists the known ones) or option, or inputs a
        metric cannot use (too few images, images too small for MS-SSIM, ...).
    """
    unique = _check_names(names, options)
    results: dict[str, dict] = {}
    for name in unique:
        start = time.perf_counter()
        result = _REGISTRY[name].fn(sets, seed=int(seed), num_bootstrap=int(num_bootstrap),
                                    **(options or {}).get(name, {}))
        if set(result) != set(RESULT_KEYS):
            raise RuntimeError(f"metric {name} returned keys {sorted(result)}, expected {RESULT_KEYS}")
        results[name] = json_safe(result)
        logger.info("metric %s = %s (%.1f s)", name, results[name]["value"], time.perf_counter() - start)
    return results


def json_safe(obj: Any) -> Any:
    """Plain JSON types: numpy / torch scalars and arrays -> Python, NaN and infinities -> None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_metrics_json(path: str | Path, results: dict[str, dict], **extra: Any) -> Path:
    """Write ``{**extra, "metrics": results}`` as indented JSON, atomically; NaN / inf become null.

    Args:
        path: the output file (e.g. ``<output_dir>/metrics.json``).
        results: :func:`compute_metrics`' output.
        extra: other top-level entries (bundle-specific numbers, sample counts, the seed, ...).
    """
    if "metrics" in extra:
        raise ValueError("'metrics' is the key of the registry's results; give the extra entry another name")
    text = json.dumps(json_safe({**extra, "metrics": results}), indent=1, allow_nan=False)
    path = Path(path)
    atomic_write_text(text + "\n", path)
    return path


def format_result(name: str, result: dict, digits: int = 3) -> str:
    """One line for a figure or a log: ``"fid 12.3 [8.1, 17.9] (ref 10.2)"``, in ``digits`` significant digits."""
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.{digits}g}"

    line = f"{name} {num(result.get('value'))}"
    if result.get("ci95"):
        line += f" [{num(result['ci95'][0])}, {num(result['ci95'][1])}]"
    reference = result.get("reference") or {}
    if reference.get("value") is not None:
        line += f" (ref {num(reference['value'])})"
    return line


def metric_result(
    value: float | None,
    ci95: list[float] | None,
    reference: dict | None,
    n: dict[str, int],
    target: str,
    read_with: Sequence[str],
    details: dict,
) -> dict:
    """A result in the one shape of :data:`RESULT_KEYS`."""
    return {"value": value, "ci95": ci95, "reference": reference, "n": n, "target": target,
            "read_with": list(read_with), "details": details}


def metric_reference(value: float | None, ci95: list[float] | None, what: str) -> dict:
    """The ``reference`` entry of a result: the number a reader compares the value with, its interval and
    what it is (e.g. "FID(training subset, held-out): real-vs-real floor")."""
    return {"value": value, "ci95": ci95, "what": what}


# ----------------------------------------------------------------------------------------------------------
# FID


def _moments(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (B, d) and covariances (B, d, d) of the rows ``idx`` (B, n) of ``x`` (N, d)."""
    s = x[idx]
    mu = s.mean(axis=1)
    c = s - mu[:, None, :]
    cov = np.einsum("bni,bnj->bij", c, c) / max(1, idx.shape[1] - 1)
    return mu, cov


def _frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    """Frechet distance of Gaussians, batched: ``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` -> (B,).

    ``tr (C1 C2)^(1/2)`` is the sum of the square roots of the eigenvalues of the symmetric
    ``C1^(1/2) C2 C1^(1/2)`` (same spectrum as C1 C2), stable for positive semi-definite inputs."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))[:, None, :]) @ np.swapaxes(v, 1, 2)
    inner = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    cross = np.sqrt(np.clip(inner, 0, None)).sum(axis=1)
    mean_term = ((mu1 - mu2) ** 2).sum(axis=1)
    return mean_term + np.trace(cov1, axis1=1, axis2=2) + np.trace(cov2, axis1=1, axis2=2) - 2 * cross


def _fid(a: np.ndarray, b: np.ndarray, ia: np.ndarray | None = None, ib: np.ndarray | None = None) -> np.ndarray:
    """FID between rows of ``a`` and ``b`` (all rows, or the resamples ``ia`` (B, n_a), ``ib`` (B, n_b))."""
    ia = np.arange(a.shape[0])[None] if ia is None else ia
    ib = np.arange(b.shape[0])[None] if ib is None else ib
    return _frechet(*_moments(a, ia), *_moments(b, ib))


@register_metric("fid", "Frechet distance of standardised features (PCA of real), generated vs held-out real")
def fid(sets: SampleSets, *, seed: int, num_bootstrap: int, max_dims: int = 32) -> dict:
    """Frechet distance between Gaussians fitted to generated and held-out real features (Heusel et al. 2017).

    With tens of images the F x F covariances (F = 512 for the default extractor) are singular, so the
    standardised features are first projected on the ``d`` leading principal axes of the real features
    (training + held-out): ``d = min(F, max_dims, floor(n_min / 2))`` with n_min the smallest set compared
    (generated, held-out, reference training subset), so every covariance rests on at least two samples per
    dimension. The basis depends on real data only, so FIDs of two generators on the same real sets are
    in the same space. What lies outside it is not seen: ``details["generated_spread_outside_subspace"]``
    says how much of the generated features' spread around the real mean that is (read with KID, which
    uses every feature). Units: squared standardised feature units. Reference: FID(training subset,
    held-out), the real-vs-real floor, biased upwards by the small samples as the value is. Interval:
    bootstrap of both sets, centred on the estimate (:func:`bootstrap_ci` ``method="centred"``).
    """
    n_gen, n_held = sets.sizes()["generated"], sets.sizes()["heldout"]
    ref_idx = reference_train_indices(sets, seed)
    seed = derived_seed(seed, "fid")
    real = np.concatenate([sets.standardised("train"), sets.standardised("heldout")])
    n_min = min(n_gen, n_held, ref_idx.size)
    dims = int(max(1, min(real.shape[1], max_dims, n_min // 2)))
    w, v = np.linalg.eigh(np.cov(real, rowvar=False).reshape(real.shape[1], real.shape[1]))
    order = np.argsort(w)[::-1][:dims]
    basis = v[:, order]
    explained = float(w[order].sum() / max(w.sum(), 1e-300))
    g = sets.standardised("generated") @ basis
    h = sets.standardised("heldout") @ basis
    t = sets.standardised("train")[ref_idx] @ basis
    offset = sets.standardised("generated")  # real mean is 0 after standardisation
    outside = offset - (offset @ basis) @ basis.T
    outside_fraction = float((outside**2).sum() / max((offset**2).sum(), 1e-300))
    value = float(_fid(g, h)[0])
    ci = bootstrap_ci(lambda i, j: _fid(g, h, i, j), (n_gen, n_held), num_resamples=num_bootstrap, seed=seed,
                      method="centred", estimate=value)
    ref_value = float(_fid(t, h)[0])
    ref_ci = bootstrap_ci(lambda i, j: _fid(t, h, i, j), (t.shape[0], n_held), num_resamples=num_bootstrap,
                          seed=seed + 1, method="centred", estimate=ref_value)
    details = {
        "features": sets.extractor_name,
        "pca_dims": dims,
        "real_variance_explained": explained,
        "generated_spread_outside_subspace": outside_fraction,
        "units": "squared standardised feature units",
        "ci_method": f"centred bootstrap (estimate + percentiles of t_b - mean t), {num_bootstrap} resamples "
                     "of both sets",
    }
    if ref_idx.size < n_gen:
        details["note"] = (f"only {ref_idx.size} training images for the floor vs {n_gen} generated: FID falls "
                           "with sample size, so the floor is set a little high")
    reference = metric_reference(ref_value, ref_ci, "FID(training subset, held-out): real-vs-real floor")
    n = {"generated": n_gen, "heldout": n_held, "train_reference": int(ref_idx.size)}
    return metric_result(value, ci, reference, n, "lower", ["kid", "precision", "recall"], details)


# ----------------------------------------------------------------------------------------------------------
# KID


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cubic polynomial kernel of Binkowski et al. (2018): ``(a . b / F + 1) ** 3`` -> (len(a), len(b))."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 of the subsets ``ix`` (B, m), ``iy`` (B, n) (distinct items in each row) -> (B,).

    ``sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1)) - 2 mean k(x_i, y_j)``."""
    m, n = ix.shape[1], iy.shape[1]
    sxx = kxx[ix[:, :, None], ix[:, None, :]].sum(axis=(1, 2)) - kxx[ix, ix].sum(axis=1)
    syy = kyy[iy[:, :, None], iy[:, None, :]].sum(axis=(1, 2)) - kyy[iy, iy].sum(axis=1)
    sxy = kxy[ix[:, :, None], iy[:, None, :]].sum(axis=(1, 2))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)


def _kid(a: np.ndarray, b: np.ndarray, num_subsets: int, seed: int) -> tuple[float, list[float] | None]:
    """KID of feature sets a (N, F), b (K, F): full-sample unbiased MMD^2 and its half-sampling interval."""
    kaa, kbb, kab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
    value = float(_mmd2_unbiased(kaa, kbb, kab, np.arange(len(a))[None], np.arange(len(b))[None])[0])
    ci = bootstrap_ci(lambda i, j: _mmd2_unbiased(kaa, kbb, kab, i, j), (len(a), len(b)),
                      num_resamples=num_subsets, seed=seed, method="half", estimate=value)
    return value, ci


@register_metric("kid", "kernel (cubic polynomial) MMD^2 of standardised features, generated vs held-out real")
def kid(sets: SampleSets, *, seed: int, num_bootstrap: int) -> dict:
    """Kernel Inception Distance (Binkowski et al. 2018) on all standardised features: the unbiased MMD^2
    with kernel ``k(x, y) = (x . y / F + 1)^3``, generated vs held-out.

    Unbiased, so it is centred on 0 for two samples of one distribution (it can be slightly negative) and
    needs no covariance: usable with tens of images. Interval: half-sampling (``num_bootstrap`` subsets of
    half of each set without replacement, :func:`bootstrap_ci` ``method="half"``), the subset estimates of
    Binkowski et al. turned into an interval of the full-sample value. Reference: KID(training subset,
    held-out), which should be near 0.
    """
    n_gen, n_held = sets.sizes()["generated"], sets.sizes()["heldout"]
    ref_idx = reference_train_indices(sets, seed)
    if min(n_gen, n_held, ref_idx.size) < 4:
        raise BundleInputError(f"KID's interval needs at least 4 images per set (generated {n_gen}, held-out "
                               f"{n_held}, training {sets.sizes()['train']})", field="kid", hint='generate more images or hold out more real ones')
    seed = derived_seed(seed, "kid")
    g, h = sets.standardised("generated"), sets.standardised("heldout")
    t = sets.standardised("train")[ref_idx]
    value, ci = _kid(g, h, num_bootstrap, seed)
    ref_value, ref_ci = _kid(t, h, num_bootstrap, seed + 1)
    details = {
        "features": sets.extractor_name,
        "kernel": "(x . y / F + 1) ** 3",
        "feature_dims": int(g.shape[1]),
        "units": "MMD^2 (kernel units)",
        "ci_method": f"half-sampling, {num_bootstrap} subsets of half of each set without replacement",
    }
    reference = metric_reference(ref_value, ref_ci, "KID(training subset, held-out): real-vs-real floor")
    n = {"generated": n_gen, "heldout": n_held, "train_reference": int(ref_idx.size)}
    return metric_result(value, ci, reference, n, "lower", ["fid", "precision", "recall"], details)


# ----------------------------------------------------------------------------------------------------------
# Precision, recall, density, coverage


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """(n,) distance from each row of ``x`` to its k-th nearest other row."""
    d = np.sqrt(np.maximum(_sq_dists(x, x), 0))
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float64."""
    return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T


def _manifold_items(fake: np.ndarray, real: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-item scores of the k-NN manifold measures of ``fake`` (N, F) against ``real`` (K, F).

    Balls are closed: a point on the boundary is inside. Returns
    ``{"precision": (N,) fake inside the real manifold (Kynkaanniemi et al. 2019),
    "recall": (K,) real inside the fake manifold, "density": (N,) number of real balls holding the fake
    point / k, "coverage": (K,) real balls holding at least one fake point (Naeem et al. 2020)}``.
    """
    d = np.sqrt(np.maximum(_sq_dists(fake, real), 0))  # (N, K)
    r_real = _kth_neighbour_radius(real, k)
    r_fake = _kth_neighbour_radius(fake, k)
    inside_real = d <= r_real[None, :]
    return {
        "precision": inside_real.any(axis=1).astype(np.float64),
        "recall": (d <= r_fake[:, None]).any(axis=0).astype(np.float64),
        "density": inside_real.sum(axis=1) / k,
        "coverage": inside_real.any(axis=0).astype(np.float64),
    }


def _manifold_metric(sets: SampleSets, which: str, k: int, seed: int, num_bootstrap: int) -> dict:
    """One of precision / recall / density / coverage with its bootstrap interval and real-vs-real reference."""
    sizes = sets.sizes()
    ref_idx = reference_train_indices(sets, seed)
    smallest = min(sizes["generated"], sizes["heldout"], ref_idx.size)
    if k < 1 or smallest <= k:
        raise BundleInputError(f"{which} with k = {k} needs more than k images in every set (smallest: {smallest})",
                               field=f"{which}.k", hint="lower k or give more images")
    seed = derived_seed(seed, which)
    g, h = sets.standardised("generated"), sets.standardised("heldout")
    t = sets.standardised("train")[ref_idx]
    items = _manifold_items(g, h, k)[which]
    ref_items = _manifold_items(t, h, k)[which]
    over = "generated" if which in ("precision", "density") else "held-out"
    details = {
        "features": sets.extractor_name,
        "k": k,
        "ci_method": (f"percentile bootstrap of the mean over the {over} items, {num_bootstrap} resamples; "
                      "the manifold (k-NN radii) is held fixed"),
    }
    if which == "density":
        target, what = "near_reference", "density of the training subset against held-out (about 1)"
    else:
        target, what = "higher", f"{which} of the training subset against held-out: what real images reach"
    read_with = {"precision": ["recall", "memorisation_features"], "recall": ["precision"],
                 "density": ["coverage"], "coverage": ["density"]}[which]
    reference = metric_reference(float(ref_items.mean()), _mean_ci(ref_items, num_bootstrap, seed + 1), what)
    n = {"generated": sizes["generated"], "heldout": sizes["heldout"], "train_reference": int(ref_idx.size)}
    return metric_result(float(items.mean()), _mean_ci(items, num_bootstrap, seed), reference, n, target,
                         read_with, details)


@register_metric("precision", "fraction of generated features inside the k-NN manifold of held-out real (k=3)")
def precision(sets: SampleSets, *, seed: int, num_bootstrap: int, k: int = 3) -> dict:
    """Improved precision (Kynkaanniemi et al. 2019): the fraction of generated images whose standardised
    features lie within the k-th-nearest-neighbour ball of some held-out real image. Fidelity: noise -> 0."""
    return _manifold_metric(sets, "precision", k, seed, num_bootstrap)


@register_metric("recall", "fraction of held-out real features inside the k-NN manifold of generated (k=3)")
def recall(sets: SampleSets, *, seed: int, num_bootstrap: int, k: int = 3) -> dict:
    """Improved recall (Kynkaanniemi et al. 2019): the fraction of held-out real images inside the
    generated images' k-NN manifold. Diversity: a collapsed generator covers little -> low."""
    return _manifold_metric(sets, "recall", k, seed, num_bootstrap)


@register_metric("density", "mean count of held-out k-NN balls holding a generated feature, / k (k=5)")
def density(sets: SampleSets, *, seed: int, num_bootstrap: int, k: int = 5) -> dict:
    """Density (Naeem et al. 2020): ``1 / (k N) sum_j sum_i 1[g_j in B(r_i, NND_k(r_i))]`` over generated
    j and held-out i; about 1 when generated images are distributed like real ones, > 1 when they crowd
    into dense real regions, unlike precision not saturated by a few outlying real images."""
    return _manifold_metric(sets, "density", k, seed, num_bootstrap)


@register_metric("coverage", "fraction of held-out k-NN balls holding at least one generated feature (k=5)")
def coverage(sets: SampleSets, *, seed: int, num_bootstrap: int, k: int = 5) -> dict:
    """Coverage (Naeem et al. 2020): the fraction of held-out real images whose k-NN ball holds at least
    one generated image; low for a collapsed or off-manifold generator."""
    return _manifold_metric(sets, "coverage", k, seed, num_bootstrap)


# ----------------------------------------------------------------------------------------------------------
# MS-SSIM diversity


def _pair_batch(h: int, w: int) -> int:
    """Pairs per MS-SSIM call: about 128 k pixels per image batch (fast on CPU, bounded memory)."""
    return max(1, (1 << 17) // (h * w))


@torch.no_grad()
def pairwise_ms_ssim(images: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
    """MS-SSIM of the image pairs ``pairs`` (P, 2) (indices into ``images`` (n, 1, H, W) in [-1, 1]) -> (P,).

    MONAI's :class:`~monai.metrics.MultiScaleSSIMMetric` with data range 2, a 7 x 7 Gaussian window
    (sigma 1.0) and three scales weighted :data:`MS_SSIM_WEIGHTS`; needs H, W >= :data:`MS_SSIM_MIN_SIDE`.
    1 for identical images, about 0 for independent noise (negative contrast-structure terms are clipped to
    0 by MONAI).
    """
    h, w = images.shape[-2:]
    if min(h, w) < MS_SSIM_MIN_SIDE:
        raise BundleInputError(f"images of {h} x {w} px are too small for MS-SSIM ({len(MS_SSIM_WEIGHTS)} scales, "
                               f"{MS_SSIM_KERNEL_SIZE} px window)", field="ms_ssim_diversity",
                               hint=f"MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} px")
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=2.0, kernel_size=MS_SSIM_KERNEL_SIZE,
                                  kernel_sigma=MS_SSIM_KERNEL_SIGMA, weights=MS_SSIM_WEIGHTS)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    step = _pair_batch(h, w)
    out = []
    for start in range(0, len(pairs), step):
        p = torch.from_numpy(pairs[start : start + step])
        out.append(metric(images[p[:, 0]].float(), images[p[:, 1]].float()).reshape(-1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _choose_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """All (i < j) pairs of n items, or ``max_pairs`` of them drawn without replacement -> (P, 2)."""
    i, j = np.triu_indices(n, k=1)
    pairs = np.stack([i, j], axis=1)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))]
    return pairs


def _weighted_pair_means(values: np.ndarray, pairs: np.ndarray, n: int, idx: np.ndarray) -> np.ndarray:
    """Mean pair value in each bootstrap resample ``idx`` (B, n) of the n images -> (B,).

    An image drawn c times counts c times: pair (a, b) gets weight c_a c_b; pairs of an image with its own
    copy do not exist (their MS-SSIM would be 1). NaN when no computed pair survives a resample."""
    b = idx.shape[0]
    counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
    weights = counts[:, pairs[:, 0]] * counts[:, pairs[:, 1]]
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights @ values) / total, np.nan)


def _diversity(groups: list[tuple[torch.Tensor, np.ndarray, np.ndarray]], num_bootstrap: int, seed: int):
    """Mean over groups of the mean pairwise MS-SSIM; groups: (images, pairs, values) with >= 1 pair each.

    Interval: bootstrap of the images within each group (stratified), pairs weighted by multiplicity."""
    if not groups:
        return None, None
    value = float(np.mean([v.mean() for _, _, v in groups]))

    def statistic(*indices: np.ndarray) -> np.ndarray:
        per_group = [_weighted_pair_means(v, p, len(x), i) for (x, p, v), i in zip(groups, indices, strict=True)]
        with np.errstate(invalid="ignore"):
            stacked = np.stack(per_group)
            keep = np.isfinite(stacked)
            return np.where(keep.any(axis=0), np.nansum(stacked, axis=0) / np.maximum(keep.sum(axis=0), 1), np.nan)

    ci = bootstrap_ci(statistic, [len(x) for x, _, _ in groups], num_resamples=num_bootstrap, seed=seed)
    return value, ci


@register_metric("ms_ssim_diversity", "mean pairwise MS-SSIM within a condition, beside real (lower = more diverse)")
def ms_ssim_diversity(sets: SampleSets, *, seed: int, num_bootstrap: int, max_pairs: int = 500) -> dict:
    """Mean pairwise MS-SSIM among generated images of one condition (or of all, without conditions),
    averaged over conditions, beside the same number for the real images (training + held-out).

    1 = all images identical (mode collapse); lower = more diverse; a generator should sit near the real
    images' value (far below it: noise-like variety). Per condition at most ``max_pairs`` pairs (a random
    subset from the seed) of each set; conditions with fewer than two images in a set are left out of that
    set's average (listed in ``details``). Interval: bootstrap of images within each condition.
    """
    seed = derived_seed(seed, "ms_ssim_diversity")
    rng = np.random.default_rng(seed)
    real_images = torch.cat([sets.train, sets.heldout])
    if sets.has_conditions:
        gen_c = sets.conditions("generated")
        real_c = np.concatenate([sets.conditions("train"), sets.conditions("heldout")])
        labels = sorted(set(gen_c.tolist()) | set(real_c.tolist()))
    else:
        gen_c = np.zeros(sets.generated.shape[0], np.int64)
        real_c = np.zeros(real_images.shape[0], np.int64)
        labels = [0]
    per_condition: dict[str, dict] = {}
    groups: dict[str, list] = {"generated": [], "real": []}
    for label in labels:
        record: dict[str, Any] = {}
        for key, images, cond in (("generated", sets.generated, gen_c), ("real", real_images, real_c)):
            x = images[torch.from_numpy(np.flatnonzero(cond == label))]
            record[f"n_{key}"] = int(x.shape[0])
            if x.shape[0] < 2:
                record[key], record[f"pairs_{key}"] = None, 0
                continue
            pairs = _choose_pairs(x.shape[0], max_pairs, rng)
            values = pairwise_ms_ssim(x, pairs)
            groups[key].append((x, pairs, values))
            record[key], record[f"pairs_{key}"] = float(values.mean()), int(len(pairs))
        per_condition[str(label) if sets.has_conditions else "all"] = record
    if not groups["generated"]:
        raise BundleInputError("no condition has two generated images: MS-SSIM diversity needs pairs",
                               field="generated_conditions", hint='generate at least two images per condition')
    value, ci = _diversity(groups["generated"], num_bootstrap, seed)
    ref_value, ref_ci = _diversity(groups["real"], num_bootstrap, seed + 1)
    reference = None if ref_value is None else metric_reference(
        ref_value, ref_ci, "the same mean pairwise MS-SSIM among real images (training + held-out)")
    details = {
        "per_condition": per_condition,
        "conditions_in_value": [k for k, r in per_condition.items() if r["generated"] is not None],
        "conditions_in_reference": [k for k, r in per_condition.items() if r["real"] is not None],
        "kernel_size": MS_SSIM_KERNEL_SIZE,
        "kernel_sigma": MS_SSIM_KERNEL_SIGMA,
        "scale_weights": list(MS_SSIM_WEIGHTS),
        "data_range": 2.0,
        "max_pairs": max_pairs,
        "ci_method": f"percentile bootstrap of images within each condition, {num_bootstrap} resamples",
    }
    n = {"generated": sets.sizes()["generated"], "real": int(real_images.shape[0])}
    return metric_result(value, ci, reference, n, "near_reference", ["recall", "coverage"], details)


# ----------------------------------------------------------------------------------------------------------
# Memorisation


def _nearest(queries: torch.Tensor, references: torch.Tensor, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance (n,) float64 from each query row (n, D) to its nearest reference row (m, D), and
    that row's index (n,). The search runs in chunks of queries in the inputs' precision (float32 for
    images, so a 256 x 256 training set is not copied to float64); the distance of the chosen pair is then
    recomputed exactly in float64, so a copy is at distance 0."""
    r2 = (references**2).sum(dim=1)
    idx = torch.cat([((references @ q.T).T * -2 + r2[None, :]).argmin(dim=1)
                     for q in queries.split(chunk)])
    d = (queries.double() - references[idx].double()).norm(dim=1)
    return d.numpy(), idx.numpy()


def _memorisation(sets: SampleSets, space: str, seed: int, num_bootstrap: int, num_pairs: int) -> dict:
    """Nearest-training-image distance ratio in ``space`` ("pixel" or "features")."""
    sizes = sets.sizes()
    if space == "pixel":
        def flat(which: str) -> torch.Tensor:
            x = sets.images(which).cpu().flatten(1)
            return x / math.sqrt(x.shape[1])  # L2 / sqrt(H W): RMS difference
        gen, train, held = flat("generated"), flat("train"), flat("heldout")
        units = "RMS pixel difference (L2 / sqrt(H W)) on [-1, 1] images"
    else:
        gen, train, held = (torch.from_numpy(sets.standardised(w)) for w in SET_NAMES)
        units = f"L2 in standardised features ({sets.extractor_name})"
    seed = derived_seed(seed, f"memorisation_{space}")
    d_gen, i_gen = _nearest(gen, train)
    d_held, i_held = _nearest(held, train)
    held_median = float(np.median(d_held))
    if held_median == 0:
        raise BundleInputError("most held-out images are identical to training images: the split leaks, so "
                               "memorisation cannot be judged", field="heldout",
                               hint="hold out images (patients) that are not in the training set")
    value = float(np.median(d_gen)) / held_median
    ci = bootstrap_ci(lambda i, j: np.median(d_gen[i], axis=1) / np.median(d_held[j], axis=1),
                      (len(d_gen), len(d_held)), num_resamples=num_bootstrap, seed=seed)
    threshold = float(d_held.min())
    order = np.argsort(d_gen, kind="stable")
    flagged = [int(i) for i in order if d_gen[i] < threshold]
    pairs = []
    for i in order[:num_pairs]:
        pair: dict[str, Any] = {"generated": int(i), "train": int(i_gen[i]), "distance": float(d_gen[i]),
                                "flagged": bool(d_gen[i] < threshold)}
        if sets.has_conditions:
            pair["generated_condition"] = int(sets.conditions("generated")[i])
            pair["train_condition"] = int(sets.conditions("train")[i_gen[i]])
        pairs.append(pair)
    details = {
        "space": space,
        "units": units,
        "statistic": "median(generated -> nearest training) / median(held-out -> nearest training)",
        "generated_median": float(np.median(d_gen)),
        "heldout_median": held_median,
        "generated_min": float(d_gen.min()),
        "heldout_min": threshold,
        "flag_rule": "generated image closer to its nearest training image than the closest held-out image is",
        "flagged": flagged,
        "flagged_fraction": len(flagged) / len(d_gen),
        "flagged_expected_if_like_heldout": len(d_gen) / (len(d_held) + 1),
        "closest_pairs": pairs,
        "ci_method": f"percentile bootstrap of both medians, {num_bootstrap} resamples",
    }
    reference = metric_reference(1.0, None, "held-out real images against the same training set (1 by "
                                 "construction); below 1 = closer to training than new patients are")
    return metric_result(value, ci, reference, dict(sizes), "at_least_reference", ["precision"], details)


@register_metric("memorisation_pixel", "median nearest-training distance, generated / held-out, in pixels")
def memorisation_pixel(sets: SampleSets, *, seed: int, num_bootstrap: int, num_pairs: int = 8) -> dict:
    """Memorisation ratio in pixel space: ``median_j d(g_j, train) / median_i d(h_i, train)`` with d the
    RMS difference to the nearest training image. >= 1: generated images are no closer to the training set
    than unseen real images are. A noise generator is far from everything (ratio >> 1): read with precision.
    ``details["closest_pairs"]``: the ``num_pairs`` generated images closest to a training image;
    ``details["flagged"]``: generated images closer than the closest held-out image (probable copies)."""
    return _memorisation(sets, "pixel", seed, num_bootstrap, num_pairs)


@register_metric("memorisation_features", "median nearest-training distance, generated / held-out, in features")
def memorisation_features(sets: SampleSets, *, seed: int, num_bootstrap: int, num_pairs: int = 8) -> dict:
    """:func:`memorisation_pixel` in standardised feature space: finds copies that are shifted, flipped in
    intensity slightly or re-noised, which pixel distances miss."""
    return _memorisation(sets, "features", seed, num_bootstrap, num_pairs)


def save_closest_pairs(
    sets: SampleSets,
    result: dict,
    path: str | Path,
    num_pairs: int = 8,
    display: Callable[[torch.Tensor], torch.Tensor] = to_display,
) -> Path:
    """PNG of the ``num_pairs`` closest pairs of a memorisation result: each generated image (top row)
    above its nearest training image (bottom row), captioned with indices, distance and flag.

    Args:
        sets: the sets the result was computed on.
        result: a ``memorisation_pixel`` / ``memorisation_features`` result.
        display: (1, H, W) in [-1, 1] -> 2D array in [0, 1] as shown (default: the MIP orientation of
            :func:`gan_core.figures.to_display`).
    """
    pairs = result["details"]["closest_pairs"][:num_pairs]
    if not pairs:
        raise ValueError("the result lists no closest pairs")
    n = len(pairs)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n + 0.5, 3.6), squeeze=False)
    for col, pair in enumerate(pairs):
        gen, train = sets.generated[pair["generated"]], sets.train[pair["train"]]
        flag = " COPY?" if pair["flagged"] else ""
        axes[0, col].imshow(display(gen.cpu()), cmap="gray", vmin=0.0, vmax=1.0)
        axes[0, col].set_title(f"gen {pair['generated']}{flag}\nd={pair['distance']:.3g}", fontsize=7)
        axes[1, col].imshow(display(train.cpu()), cmap="gray", vmin=0.0, vmax=1.0)
        axes[1, col].set_title(f"train {pair['train']}", fontsize=7)
        for ax in axes[:, col]:
            ax.set_axis_off()
    details = result["details"]
    fig.suptitle(f"closest generated (top) / nearest training (bottom), {details['space']} distance; "
                 f"held-out minimum {details['heldout_min']:.3g}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
