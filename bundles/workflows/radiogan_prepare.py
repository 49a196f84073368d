"""RadioGAN preparation: PET studies + class labels -> fixed-size coronal MIPs (NIfTI + PNG) + datalist.

The per-study chain (SUV, 2 mm nearest resampling, clip/scale, MIP, :class:`FitToSized`) is a MONAI
``Compose`` declared in ``radiogan_bundle/configs/prepare.json``; this module loops over the studies,
splits them, writes the files and the datalist, and creates the demo cohort when the raw folder is missing.

Prepared dataset (written to ``<dataset_dir>.partial`` then renamed)::

    dataset_dir/images/<patient_id>.nii.gz   (S0, S1) float32 in [0, 1] = SUV / suv_max, 4x4 RAS affine
    dataset_dir/png/<patient_id>.png         preview, head up
    dataset_dir/datalist.json                {"training": [...], "validation": [...], "classes": [...],
                                              "image_size": [S0, S1], "spacing_mm": [...], "suv_max": ...}

Each datalist item is ``{"patient_id", "image": abs path, "png": abs path, "label": class index,
"class_name", "source": study folder}``; "validation" holds the held-out patients (never trained on).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402
from monai.config import KeysCollection  # noqa: E402
from monai.data import MetaTensor  # noqa: E402
from monai.transforms import MapTransform, ResizeWithPadOrCrop  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bundles.errors import BundleInputError  # noqa: E402
from bundles.fileio import atomic_path, atomic_write_text  # noqa: E402
from bundles.io.pet_datalist import CLASSES, pet_datalist  # noqa: E402

__all__ = ["CLASSES", "FitToSized", "ensure_demo_cohort", "ensure_prepared", "prepare_dataset", "run_preparation"]

logger = logging.getLogger(__name__)

DATALIST = "datalist.json"


class FitToSized(MapTransform):
    """Bring 2D images (1, S0, S1) to a fixed ``spatial_size`` without ever resampling them.

    Policy: an image smaller than the size is zero-padded symmetrically (value 0 = SUV 0; the affine's
    origin moves so world positions are kept). An image larger than the size along any axis is refused
    with a :class:`BundleInputError`, unless ``crop=True``, which centre-crops it (cutting anatomy, so it is
    opt-in). Anatomy is never stretched.
    """

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int], crop: bool = False):
        super().__init__(keys)
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.crop = bool(crop)
        self.resize = ResizeWithPadOrCrop(self.spatial_size, method="symmetric", mode="constant")

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            shape = tuple(image.shape[1:])
            if len(shape) != len(self.spatial_size):
                raise BundleInputError(
                    f"expected a 2D image (1, S0, S1), got shape {tuple(image.shape)}", path=_source(image), field=key
                )
            if not self.crop and any(s > t for s, t in zip(shape, self.spatial_size, strict=True)):
                raise BundleInputError(
                    f"the MIP is {shape[0]} x {shape[1]} pixels, larger than the fixed size "
                    f"{self.spatial_size[0]} x {self.spatial_size[1]}; policy: MIPs are zero-padded to the fixed "
                    "size and never stretched, and larger ones are refused unless cropping is enabled",
                    path=_source(image),
                    field="image_size",
                    hint="raise image_size (generator first_grid * 2**len(channels)) or set crop=true to "
                    "centre-crop (cuts anatomy)",
                )
            d[key] = self.resize(image)
        return d


def _apply(transform: Callable[[dict], dict], folder: str) -> MetaTensor:
    """Run the chain on one study; a BundleInputError wrapped by MONAI's Compose is re-raised as itself."""
    try:
        return transform({"image": folder})["image"]
    except RuntimeError as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, BundleInputError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def _source(image) -> str | None:
    if isinstance(image, MetaTensor):
        return image.meta.get("filename_or_obj")
    return None


def ensure_demo_cohort(raw_dir: str | Path, subjects: int = 100, seed: int = 0, shape=(23, 16, 76)) -> Path:
    """Write the PET demo cohort into ``raw_dir`` when that folder does not exist (and say so in the log).

    An existing folder is left alone, even an empty one (which the datalist reader then reports).
    ``shape`` (X, Y, Z voxels at 4.06 x 4.06 x 2 mm) is the demo's small field of view: 93 x 65 x 152 mm,
    whose 2 mm coronal MIP (47 x 76 pixels) fits the demo's 48 x 80 images.
    """
    from bundles.phantoms.pet import write_pet_cohort

    raw_dir = Path(raw_dir)
    if raw_dir.exists():
        return raw_dir
    logger.warning("%s does not exist: writing the PET demo cohort there (%d studies, seed %d)", raw_dir,
                   subjects, seed)
    return write_pet_cohort(raw_dir, subjects=subjects, seed=seed, shape=tuple(shape))


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
) -> dict:
    """Run ``transform`` on every labelled study of ``raw_dir`` and write the prepared dataset.

    Args:
        raw_dir: PET studies + ``labels.csv`` (patient_id,label), read with ``pet_datalist`` (which rejects
            unknown labels, naming the row).
        dataset_dir: output folder (must not exist yet; written as ``<dataset_dir>.partial``, then renamed).
        transform: maps ``{"image": study folder, ...}`` to ``{"image": MetaTensor (1, S0, S1) in [0, 1]}``.
        image_size: the fixed (S0, S1) the transform ends with (recorded in the datalist, checked here).
        spacing_mm, suv_max: recorded in the datalist (inference writes SUV = value * suv_max at this spacing).
        labels_csv: default ``raw_dir/labels.csv``.
        heldout_per_class: patients per class kept out of training (for the memorisation audit and FID).
        seed: split seed.

    Returns:
        the datalist dictionary (also written to ``dataset_dir/datalist.json``).
    """
    raw_dir, dataset_dir = Path(raw_dir), Path(dataset_dir)
    labels_csv = Path(labels_csv) if labels_csv else raw_dir / "labels.csv"
    studies = pet_datalist(raw_dir, labels_csv)
    image_size = [int(s) for s in image_size]
    partial = dataset_dir.with_name(dataset_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "images").mkdir(parents=True)
    (partial / "png").mkdir()
    items = []
    try:
        for study in tqdm(studies, desc="preparing PET MIPs"):
            name = study["label_name"]
            out = _apply(transform, study["image"])
            if list(out.shape[1:]) != image_size:
                raise BundleInputError(
                    f"the preparation chain gave {list(out.shape[1:])}, not image_size {image_size}",
                    field="image_size",
                    hint="the last transform of the chain must be FitToSized with the same image_size",
                )
            pid = str(study["patient_id"])
            array = out[0].detach().cpu().numpy().astype(np.float32)
            with atomic_path(partial / "images" / f"{pid}.nii.gz") as tmp:
                nib.save(nib.Nifti1Image(array, nifti_affine(out)), str(tmp))
            _write_png(array, partial / "png" / f"{pid}.png")
            items.append({
                "patient_id": pid,
                "image": str(dataset_dir / "images" / f"{pid}.nii.gz"),
                "png": str(dataset_dir / "png" / f"{pid}.png"),
                "label": int(study["label"]),
                "class_name": name,
                "source": str(study["image"]),
            })
        training, validation = _split(items, heldout_per_class, seed)
        datalist = {
            "training": training,
            "validation": validation,
            "classes": list(CLASSES),
            "image_size": image_size,
            "spacing_mm": [float(spacing_mm)] * 2,
            "suv_max": float(suv_max),
        }
        atomic_write_text(json.dumps(datalist, indent=1), partial / DATALIST)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    os.replace(partial, dataset_dir)
    counts = {c: sum(it["class_name"] == c for it in training) for c in CLASSES}
    logger.info("prepared %d training / %d held-out MIPs in %s (training per class: %s)",
                len(training), len(validation), dataset_dir, counts)
    return datalist


def run_preparation(
    raw_dir: str | Path,
    dataset_dir: str | Path,
    transform: Callable[[dict], dict],
    *,
    demo_subjects: int = 100,
    demo_shape: Sequence[int] = (23, 16, 76),
    seed: int = 0,
    overwrite: bool = False,
    **kwargs,
) -> dict:
    """The ``preparation`` run id: demo cohort when ``raw_dir`` is missing, then :func:`prepare_dataset`.

    An existing ``dataset_dir/datalist.json`` is kept (and returned) unless ``overwrite``.
    """
    datalist_path = Path(dataset_dir) / DATALIST
    if datalist_path.exists() and not overwrite:
        logger.info("%s exists: keeping the prepared dataset (overwrite=true to redo it)", datalist_path)
        return load_datalist(datalist_path)
    ensure_demo_cohort(raw_dir, subjects=demo_subjects, seed=seed, shape=demo_shape)
    return prepare_dataset(raw_dir, dataset_dir, transform, seed=seed, **kwargs)


def load_datalist(path: str | Path) -> dict:
    """Read a prepared ``datalist.json``; BundleInputError when it is missing or lacks the split keys."""
    path = Path(path)
    if not path.is_file():
        raise BundleInputError("prepared datalist not found", path=path,
                               hint="run the preparation (prepare.json) or point dataset_dir at a prepared dataset")
    datalist = json.loads(path.read_text())
    for key in ("training", "validation", "classes", "image_size"):
        if key not in datalist:
            raise BundleInputError("not a RadioGAN datalist", path=path, field=key)
    if not datalist["training"]:
        raise BundleInputError("the datalist has no training images", path=path, field="training")
    return datalist


def ensure_prepared(prepare_config: str | Path, **overrides) -> dict:
    """Return the prepared datalist, running ``preparation`` from ``prepare.json`` first when it is missing.

    Used by train.json and evaluate.json so that the chain is declared once (in prepare.json).
    ``overrides`` set top-level keys of prepare.json (``bundle_root``, ``raw_dir``, ``dataset_dir``, ...).
    """
    dataset_dir = overrides.get("dataset_dir")
    if dataset_dir is not None and (Path(dataset_dir) / DATALIST).exists():
        return load_datalist(Path(dataset_dir) / DATALIST)
    parser = ConfigParser()
    parser.read_config(str(prepare_config))
    for key, value in overrides.items():
        parser[key] = value
    logger.warning("no prepared dataset in %s: running the preparation of %s", dataset_dir, prepare_config)
    return parser.get_parsed_content("preparation")


def load_images(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Datalist items -> images (N, 1, S0, S1) float32 in [-1, 1] and labels (N,) int64."""
    images = [np.asarray(nib.load(it["image"]).dataobj, dtype=np.float32) for it in items]
    x = torch.from_numpy(np.stack(images))[:, None] * 2.0 - 1.0
    return x, torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
