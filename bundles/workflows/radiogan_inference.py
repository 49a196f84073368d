"""RadioGAN inference: N synthetic PET MIPs per requested class, from fixed seeds, as NIfTI (SUV) + PNG."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bundles.engines.handlers import load_checkpoint, load_state_into  # noqa: E402
from bundles.errors import BundleInputError  # noqa: E402
from bundles.evaluation.latent_walk import save_strip, to_display  # noqa: E402
from bundles.fileio import atomic_path, atomic_write_text  # noqa: E402
from bundles.workflows.radiogan_prepare import CLASSES  # noqa: E402

__all__ = ["class_indices", "fixed_latents", "generate_images", "load_generator", "mip_affine", "to_suv"]

logger = logging.getLogger(__name__)


def mip_affine(spacing_mm: float | Sequence[float] = 2.0) -> np.ndarray:
    """4x4 RAS affine of a generated coronal MIP (S0, S1): axis 0 runs to the patient's left (-R), axis 1 up (+S),
    as the MIPs of axial PET DICOM series prepared by this bundle; the third axis is anterior-posterior."""
    s0, s1 = (float(spacing_mm),) * 2 if np.isscalar(spacing_mm) else (float(v) for v in spacing_mm)
    affine = np.zeros((4, 4))
    affine[0, 0] = -s0
    affine[2, 1] = s1
    affine[1, 2] = 1.0
    affine[3, 3] = 1.0
    return affine


def to_suv(images: torch.Tensor, suv_max: float = 30.0) -> torch.Tensor:
    """Generator output in [-1, 1] -> SUV in [0, suv_max] (inverse of the preparation's clip-and-scale)."""
    return (images.clamp(-1.0, 1.0) + 1.0) * 0.5 * suv_max


def class_indices(classes: Sequence[str | int] | None, class_names: Sequence[str] = CLASSES) -> list[int]:
    """Class names or indices -> indices; ``None`` means all classes."""
    if classes is None:
        return list(range(len(class_names)))
    out = []
    for c in classes:
        if isinstance(c, int) and 0 <= c < len(class_names):
            out.append(c)
        elif isinstance(c, str) and c in class_names:
            out.append(list(class_names).index(c))
        else:
            raise BundleInputError(f"unknown class {c!r}; classes are {', '.join(class_names)} (or 0..4)",
                                   field="classes")
    return out


def fixed_latents(num: int, latent_dim: int = 100, seed: int = 0) -> torch.Tensor:
    """(num, latent_dim) N(0, 1) codes; code i depends only on (seed, i), so adding images keeps the first ones."""
    return torch.stack([torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed * 100_003 + i))
                        for i in range(num)])


def load_generator(generator: torch.nn.Module, ckpt_path: str | Path, device: str | torch.device = "cpu"):
    """Load the "generator" entry of a training checkpoint (or a bare state dict) into ``generator``; eval mode."""
    state = load_checkpoint(ckpt_path)
    state = state.get("generator", state)
    load_state_into(generator, state, ckpt_path, "generator")
    return generator.to(device).eval()


@torch.no_grad()
def generate_images(
    generator: torch.nn.Module,
    output_dir: str | Path,
    *,
    classes: Sequence[str | int] | None = None,
    num_per_class: int = 4,
    seed: int = 0,
    latent_dim: int = 100,
    spacing_mm: float = 2.0,
    suv_max: float = 30.0,
    class_names: Sequence[str] = CLASSES,
) -> list[dict]:
    """Generate ``num_per_class`` MIPs for every requested class and write them.

    Image i of every class uses the same latent code ``fixed_latents(num_per_class, latent_dim, seed)[i]``, so
    overviews of two classes differ by the label alone. Files in ``output_dir``: ``<class>_<iii>.nii.gz``
    (S0, S1) float32 SUV with :func:`mip_affine`, ``<class>_<iii>.png`` (head up, dark = high SUV, 0..suv_max),
    ``overview_<class>.png`` (a strip per class) and ``manifest.json`` (file, class, latent index per image).
    """
    output_dir = Path(output_dir)
    if num_per_class < 1:
        raise BundleInputError(f"num_per_class must be >= 1, got {num_per_class}", field="num_per_class")
    wanted = class_indices(classes, class_names)
    device = next(generator.parameters()).device
    generator.eval()
    z = fixed_latents(num_per_class, latent_dim, seed).to(device)
    affine = mip_affine(spacing_mm)
    manifest = []
    for c in wanted:
        name = class_names[c]
        images = generator(z, torch.full((num_per_class,), c, dtype=torch.long, device=device)).cpu()
        suv = to_suv(images, suv_max)
        for i in range(num_per_class):
            stem = f"{name}_{i:03d}"
            with atomic_path(output_dir / f"{stem}.nii.gz") as tmp:
                nib.save(nib.Nifti1Image(suv[i, 0].numpy().astype(np.float32), affine), str(tmp))
            with atomic_path(output_dir / f"{stem}.png") as tmp:
                plt.imsave(tmp, to_display(images[i]).numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            manifest.append({"image": str(output_dir / f"{stem}.nii.gz"), "png": str(output_dir / f"{stem}.png"),
                             "class_name": name, "label": c, "latent_index": i, "seed": seed})
        save_strip(images, output_dir / f"overview_{name}.png", suptitle=f"{name}: latent codes 0..{num_per_class - 1}")
    atomic_write_text(json.dumps(manifest, indent=1), output_dir / "manifest.json")
    logger.info("wrote %d generated MIPs (%d classes x %d) to %s", len(manifest), len(wanted), num_per_class,
                output_dir)
    return manifest
