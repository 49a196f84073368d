"""RadioGAN preparation: PET studies + class labels -> fixed-size coronal MIPs (NIfTI + PNG) + datalist.

The per-study chain (SUV, 2 mm nearest resampling, clip/scale, MIP, ``FitToSized``) is a MONAI ``Compose``
declared once in ``radiogan_bundle/configs/prepare.json``; this module loops over the studies, skips (and
reports) a study the chain cannot use, splits the rest, and writes the files and the datalist. The demo cohort is
written only on the demo path (:mod:`gan_core.datasets`).

Prepared dataset (built in a private work folder and swapped into place when complete; paths relative)::

    images/<id>.nii.gz   (S0, S1) float32 in [0, 1] = SUV / suv_max, 4x4 RAS affine
    png/<id>.png         preview, head up
    datalist.json        {"training": [...], "validation": [...], "classes": [...], "image_size": [S0, S1],
                          "spacing_mm": [...], "suv_max": ..., "settings", "skipped"}
    run_info.json        the command, settings and versions

Each datalist item is ``{"patient_id", "image", "png", "label": class index, "class_name", "source": study
folder}``; "validation" holds the held-out patients (never trained on). File names come from patient IDs only
through :func:`gan_core.io.names.safe_name`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from tqdm import tqdm

from gan_core import datasets
from gan_core.errors import BundleInputError, find_input_error
from gan_core.figures import plt
from gan_core.fileio import atomic_path
from gan_core.io.names import safe_name

from .datalist import CLASSES, pet_datalist

__all__ = ["CLASSES", "generator_grid", "load_datalist", "load_images", "model_inputs", "prepare_dataset",
           "run_preparation"]

logger = logging.getLogger(__name__)

BUNDLE = "radiogan"


def _apply(transform: Callable[[dict], dict], folder: str) -> MetaTensor:
    """Run the chain on one study; a BundleInputError wrapped by MONAI's Compose is re-raised as itself."""
    try:
        return transform({"image": folder})["image"]
    except Exception as err:
        found = find_input_error(err)
        if found is None:
            raise
        raise found from None


def _split(items: list[dict], heldout_per_class: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Per class, ``min(heldout_per_class, n - 1)`` randomly chosen patients are held out."""
    rng = np.random.default_rng(seed)
    training, validation = [], []
    for c in range(len(CLASSES)):
        members = [it for it in items if it["label"] == c]
        order = rng.permutation(len(members))
        n_held = min(heldout_per_class, max(len(members) - 1, 0))
        held = set(order[:n_held].tolist())
        for i, item in enumerate(members):
            (validation if i in held else training).append(item)
    return training, validation


def nifti_affine(image: MetaTensor) -> np.ndarray:
    """4x4 RAS affine of a 2D MIP for NIfTI: the MIP's 3x3 affine maps (a, b) to the two in-plane world axes
    named in ``meta["mip_world_axes"]`` (default "RS", coronal); the third array axis points along the
    projected world axis with 1 mm spacing."""
    affine = np.asarray(image.affine, dtype=np.float64)
    if affine.shape == (4, 4):
        return affine
    world = str(image.meta.get("mip_world_axes", "RS"))
    out = np.zeros((4, 4))
    out[3, 3] = 1.0
    for i, name in enumerate(world):
        out["RAS".index(name), :2] = affine[i, :2]
        out["RAS".index(name), 3] = affine[i, 2]
    projected = next(k for k in range(3) if "RAS"[k] not in world)
    out[projected, 2] = 1.0
    return out


def _write_png(array: np.ndarray, path: Path) -> None:
    """Save a (S0, S1) [0, 1] image head up (rows along the body axis) as a grey PNG (dark = high uptake)."""
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.flipud(array.T), cmap="gray_r", vmin=0.0, vmax=1.0)


def prepare_dataset(
    raw_dir: str | Path,
    dataset_dir: str | Path,
    transform: Callable[[dict], dict],
    *,
    image_size: Sequence[int],
    spacing_mm: float = 2.0,
    suv_max: float = 30.0,
    labels_csv: str | Path | None = None,
    heldout_per_class: int = 4,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Run ``transform`` on every labelled study of ``raw_dir`` and write the prepared dataset.

    Args:
        raw_dir: PET studies + ``labels.csv`` (patient_id,label), read with ``pet_datalist`` (which rejects
            unknown labels, naming the row).
        dataset_dir: a missing or empty folder, or one this preparation wrote (replaced only with ``overwrite``).
        transform: maps ``{"image": study folder, ...}`` to ``{"image": MetaTensor (1, S0, S1) in [0, 1]}``.
        image_size: the fixed (S0, S1) the transform ends with (recorded in the datalist, checked here).
        spacing_mm, suv_max: recorded in the datalist (inference writes SUV = value * suv_max at this spacing).
        labels_csv: default ``raw_dir/labels.csv``.
        heldout_per_class: patients per class kept out of training (for the memorisation audit and FID).
        seed: split seed.

    Returns:
        the datalist dictionary (absolute paths).
    """
    raw_dir = Path(raw_dir).resolve()
    datasets.check_folders(raw_dir, dataset_dir)
    labels_csv = Path(labels_csv) if labels_csv else raw_dir / "labels.csv"
    studies = pet_datalist(raw_dir, labels_csv)
    image_size = [int(s) for s in image_size]
    settings = {"image_size": image_size, "spacing_mm": float(spacing_mm), "suv_max": float(suv_max),
                "heldout_per_class": int(heldout_per_class), "seed": int(seed), "raw_dir": str(raw_dir),
                "labels_csv": str(labels_csv)}
    items, skipped = [], []
    with datasets.write_dataset(dataset_dir, bundle=BUNDLE, overwrite=overwrite, settings=settings, seed=seed) as work:
        (work / "images").mkdir()
        (work / "png").mkdir()
        for study in tqdm(studies, desc="preparing PET MIPs", unit="study"):
            pid = str(study["patient_id"])
            try:
                out = _apply(transform, study["image"])
            except BundleInputError as err:
                logger.warning("skipping patient %s: %s", pid, err)
                skipped.append({"patient_id": pid, "reason": str(err)})
                continue
            if list(out.shape[1:]) != image_size:
                raise BundleInputError(
                    f"the preparation chain gave {list(out.shape[1:])}, not image_size {image_size}",
                    field="image_size",
                    hint="the last transform of the chain must be FitToSized with the same image_size",
                )
            name = safe_name(pid)
            array = out[0].detach().cpu().numpy().astype(np.float32)
            with atomic_path(work / "images" / f"{name}.nii.gz") as tmp:
                nib.save(nib.Nifti1Image(array, nifti_affine(out)), str(tmp))
            _write_png(array, work / "png" / f"{name}.png")
            items.append({"patient_id": pid, "image": f"images/{name}.nii.gz", "png": f"png/{name}.png",
                          "label": int(study["label"]), "class_name": study["label_name"],
                          "source": str(study["image"])})
        if not items:
            raise BundleInputError("no study could be prepared", path=raw_dir, field="patients",
                                   hint=f"fix the reasons logged for each study, e.g. {skipped[0]['reason']}")
        training, validation = _split(items, heldout_per_class, seed)
        datalist = {"training": training, "validation": validation, "classes": list(CLASSES),
                    "image_size": image_size, "spacing_mm": [float(spacing_mm)] * 2, "suv_max": float(suv_max),
                    "skipped": skipped}
        datasets.save_datalist(work, datalist, bundle=BUNDLE, settings=settings)
    counts = {c: sum(it["class_name"] == c for it in training) for c in CLASSES}
    logger.info("prepared %d training / %d held-out MIPs in %s (training per class: %s)",
                len(training), len(validation), dataset_dir, counts)
    return load_datalist(dataset_dir)


def run_preparation(
    raw_dir: str | Path,
    dataset_dir: str | Path,
    transform: Callable[[dict], dict],
    *,
    demo_raw_dir: str | Path,
    demo_dataset_dir: str | Path,
    demo_subjects: int = 100,
    demo_shape: Sequence[int] = (23, 16, 76),
    seed: int = 0,
    **kwargs,
) -> dict:
    """The ``preparation`` run id: the demo cohort on the demo path, then :func:`prepare_dataset`.

    ``demo_shape`` (X, Y, Z voxels at 4.06 x 4.06 x 2 mm) is the demo's small field of view: 93 x 65 x 152 mm,
    whose 2 mm coronal MIP (47 x 76 pixels) fits the demo's 48 x 80 images.
    """
    from .demo_cohort import write_demo_cohort

    raw = datasets.raw_folder(
        raw_dir, dataset_dir, demo_raw_dir=demo_raw_dir, demo_dataset_dir=demo_dataset_dir,
        write_demo=lambda path: write_demo_cohort(path, subjects=demo_subjects, seed=seed, shape=tuple(demo_shape)),
        what="PET DICOM studies and labels.csv")
    return prepare_dataset(raw, dataset_dir, transform, seed=seed, **kwargs)


def load_datalist(dataset_dir: str | Path, image_size: Sequence[int] | None = None) -> dict:
    """The prepared RadioGAN datalist (absolute paths); ``image_size``, when given, must be the prepared one."""
    expected = {"image_size": None if image_size is None else [int(s) for s in image_size]}
    datalist = datasets.load_datalist(dataset_dir, bundle=BUNDLE, expected=expected)
    if not datalist["training"]:
        raise BundleInputError("the datalist has no training images", path=Path(dataset_dir) / datasets.DATALIST,
                               field="training", hint="prepare a cohort with studies of every class")
    return datalist


def generator_grid(image_size: Sequence[int], num_doublings: int) -> list[int]:
    """The generator's first feature-map size for images of ``image_size`` after ``num_doublings`` upsamplings."""
    step = 2 ** int(num_doublings)
    if any(int(s) % step for s in image_size):
        raise BundleInputError(
            f"the prepared image size {list(image_size)} is not a multiple of {step} (2 ** {num_doublings} "
            "generator upsamplings)", field="network#channels",
            hint=f"prepare with an image_size that is a multiple of {step}, or change the number of channels")
    return [int(s) // step for s in image_size]


def model_inputs(datalist: dict) -> dict:
    """What inference needs, recorded with the trained generator: class names, pixel spacing, SUV scale."""
    return {"classes": list(datalist["classes"]), "spacing_mm": list(datalist["spacing_mm"]),
            "suv_max": float(datalist["suv_max"]), "image_size": list(datalist["image_size"])}


def load_images(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Datalist items -> images (N, 1, S0, S1) float32 in [-1, 1] and labels (N,) int64."""
    images = [np.asarray(nib.load(it["image"]).dataobj, dtype=np.float32) for it in items]
    x = torch.from_numpy(np.stack(images))[:, None] * 2.0 - 1.0
    return x, torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
