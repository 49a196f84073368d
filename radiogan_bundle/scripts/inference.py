"""RadioGAN inference: N synthetic PET MIPs per requested class, from fixed seeds, as NIfTI (SUV) + PNG.

The trained model comes from its record (:mod:`gan_core.models`), which holds the class names, the pixel
spacing and the SUV scale of the data it was trained on: no prepared dataset is needed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from gan_core.bundle import bundle_name
from gan_core.errors import BundleInputError
from gan_core.figures import plt, save_strip, to_display
from gan_core.fileio import atomic_dir, atomic_path, atomic_write_text, written_by
from gan_core.io.synthetic_dicom import SyntheticProvenance
from gan_core.models import Model
from gan_core.runs import RUN_INFO, run_info, write_run_info

from .prepare import CLASSES
from .synthetic_dicom import write_synthetic_pet_mip

__all__ = ["class_indices", "example_inputs", "fixed_latents", "generate_images", "mip_affine", "to_suv"]

KIND = "radiogan inference"

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
                                   field="classes",
                                   hint='pass --classes "[\'lung\', \'lymphoma\']" with names from the model\'s classes')
    return out


def fixed_latents(num: int, latent_dim: int = 100, seed: int = 0) -> torch.Tensor:
    """(num, latent_dim) N(0, 1) codes; code i depends only on (seed, i), so adding images keeps the first ones."""
    return torch.stack([torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed * 100_003 + i))
                        for i in range(num)])


def example_inputs(model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (2, latent_dim), labels (2,)): inputs for export checks."""
    return torch.randn(2, int(model.network["latent_dim"])), torch.tensor([0, int(model.network["num_classes"]) - 1])


@torch.no_grad()
def generate_images(
    model: Model,
    output_dir: str | Path,
    *,
    classes: Sequence[str | int] | None = None,
    num_per_class: int = 4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dicom: bool = True,
    bundle_version: str = "unknown",
    settings: dict | None = None,
) -> list[dict]:
    """Generate ``num_per_class`` MIPs for every requested class and write them.

    Image i of every class uses the same latent code ``fixed_latents(num_per_class, latent_dim, seed)[i]``, so
    overviews of two classes differ by the label alone. Files in ``output_dir`` (a missing or empty folder, or an
    earlier output of this inference, replaced): ``<class>_<iii>.nii.gz`` (S0, S1) float32 SUV with
    :func:`mip_affine` at the model's spacing, ``<class>_<iii>.png`` (head up, dark = high SUV, 0..suv_max),
    ``overview_<class>.png`` (a strip per class), with ``dicom`` ``dicom/<class>_<iii>.dcm`` (a PET image in
    SUV, Units GML, a new study per image, marked SYNTHETIC: :mod:`gan_core.io.synthetic_dicom`), ``manifest.json``
    (file, class, latent index per image) and ``run_info.json``. ``bundle_version`` goes into the DICOM
    SoftwareVersions.
    """
    if num_per_class < 1:
        raise BundleInputError(f"num_per_class must be >= 1, got {num_per_class}", field="num_per_class",
                               hint="pass --num_per_class 4, for example")
    class_names = list(model.inputs.get("classes", CLASSES))
    latent_dim = int(model.network["latent_dim"])
    suv_max = float(model.inputs.get("suv_max", 30.0))
    wanted = class_indices(classes, class_names)
    generator = model.load(device)
    z = fixed_latents(num_per_class, latent_dim, seed).to(device)
    affine = mip_affine(model.inputs.get("spacing_mm", 2.0))
    manifest = []
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="inference_dir") as work:
        for c in wanted:
            name = class_names[c]
            images = generator(z, torch.full((num_per_class,), c, dtype=torch.long, device=device)).cpu()
            suv = to_suv(images, suv_max)
            for i in range(num_per_class):
                stem = f"{name}_{i:03d}"
                with atomic_path(work / f"{stem}.nii.gz") as tmp:
                    image = nib.Nifti1Image(suv[i, 0].numpy().astype(np.float32), affine)
                    image.header["descrip"] = b"SYNTHETIC gan-bundles radiogan SUV"
                    nib.save(image, str(tmp))
                with atomic_path(work / f"{stem}.png") as tmp:
                    plt.imsave(tmp, to_display(images[i]).numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
                entry = {"image": f"{stem}.nii.gz", "png": f"{stem}.png", "class_name": name, "label": c,
                         "latent_index": i, "seed": seed}
                if dicom:
                    provenance = SyntheticProvenance(bundle_name(), bundle_version, model.sha256,
                                                     index=len(manifest), description=name[:40])
                    write_synthetic_pet_mip(suv[i, 0].numpy(), affine, work / "dicom" / f"{stem}.dcm", provenance)
                    entry["dicom"] = f"dicom/{stem}.dcm"
                manifest.append(entry)
            save_strip(images, work / f"overview_{name}.png",
                       suptitle=f"SYNTHETIC {name}: latent codes 0..{num_per_class - 1}")
        atomic_write_text(json.dumps({"written_by": written_by(KIND), "model": str(model.path),
                                      "model_sha256": model.sha256, "images": manifest}, indent=1),
                          work / "manifest.json")
        write_run_info(work, run_info(KIND, settings=settings, seed=seed))
    logger.info("wrote %d generated MIPs (%d classes x %d) to %s", len(manifest), len(wanted), num_per_class,
                output_dir)
    return manifest
