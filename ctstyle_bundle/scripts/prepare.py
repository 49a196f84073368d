"""ctstyle preparation: CT slices + six-label maps -> checked, sized slice pairs with the style / evaluation split.

Raw data: ``<raw_dir>/<PatientID>/ct_sNNN.nii.gz`` (HU) + ``label_sNNN.nii.gz`` (values 0, 50, 100, 150, 200, 230),
as ``scripts.datalist.ctseg_datalist`` reads them (the demo cohort of ``scripts.demo_cohort`` has this
layout). The per-pair chain (load, channel first, label values checked, both resized to ``image_size``: area
averaging for the CT, nearest for the map) is a MONAI ``Compose`` declared once in
``ctstyle_bundle/configs/prepare.json``. The split follows the paper: ONE style slice of one patient (the paper
trains a generator per style image), ``num_eval_patients`` other patients held out for evaluation, the slices of
the rest for training.

Prepared dataset (built in a private work folder and swapped into place when complete; paths relative)::

    images/<id>_sNNN.nii.gz   (S, S) float32 HU, the slice's 4x4 RAS affine (spacing updated by the resize)
    labels/<id>_sNNN.nii.gz   (S, S) uint8 label values, same affine
    datalist.json             {"style": {...}, "evaluation": [...], "training": [...], "image_size", "settings"}
    run_info.json             the command, settings and versions
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from gan_core import datasets
from gan_core.errors import BundleInputError, find_input_error
from gan_core.fileio import atomic_path
from gan_core.io.names import safe_name

from .datalist import ctseg_datalist
from .labels import LABEL_VALUES, SEGMENT_NAMES
from .networks import map_size_multiple

__all__ = ["load_datalist", "model_inputs", "prepare_dataset", "run_preparation", "split_entries"]

logger = logging.getLogger(__name__)

BUNDLE = "ctstyle"


def split_entries(entries: list[dict], style_patient: str | None, style_slice: int | None,
                  num_eval_patients: int, path: Path) -> dict:
    """``{"style": entry, "evaluation": [...], "training": [...]}`` of datalist entries ``{"patient_id", ...}``.

    Args:
        style_patient: PatientID of the style image (default: the last patient in sorted order).
        style_slice: index of the slice among that patient's slices (default: the middle one).
        num_eval_patients: patients held out for evaluation (the ones before the style patient).
    """
    patients = sorted({e["patient_id"] for e in entries})
    style_patient = patients[-1] if style_patient is None else str(style_patient)
    if style_patient not in patients:
        raise BundleInputError(f"style patient {style_patient!r} not in the cohort ({len(patients)} patients)",
                               path=path, field="style_patient", hint=f"choose one of {patients[:10]}")
    others = [p for p in patients if p != style_patient]
    if len(others) <= num_eval_patients:
        raise BundleInputError(
            f"{len(patients)} patients cannot give a style patient, {num_eval_patients} evaluation patient(s) and "
            "training patients", path=path, field="num_eval_patients", hint="lower num_eval_patients or add patients")
    eval_patients = set(others[len(others) - num_eval_patients:]) if num_eval_patients else set()
    style_slices = [e for e in entries if e["patient_id"] == style_patient]
    index = len(style_slices) // 2 if style_slice is None else int(style_slice)
    if not 0 <= index < len(style_slices):
        raise BundleInputError(f"style_slice {index} out of range: patient {style_patient} has {len(style_slices)}",
                               path=path, field="style_slice", hint=f"pass --style_slice 0..{len(style_slices) - 1}")
    return {
        "style": style_slices[index],
        "evaluation": [e for e in entries if e["patient_id"] in eval_patients],
        "training": [e for e in entries if e["patient_id"] not in eval_patients and e["patient_id"] != style_patient],
    }


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def prepare_dataset(
    raw_dir: str | Path,
    dataset_dir: str | Path,
    transform: Callable[[dict], dict],
    *,
    image_size: int,
    style_patient: str | None = None,
    style_slice: int | None = None,
    num_eval_patients: int = 1,
    overwrite: bool = False,
) -> dict:
    """Check and size every slice pair of ``raw_dir``, split them and write the prepared dataset.

    Args:
        transform: ``{"image": CT path, "label": map path}`` -> ``{"image": (1, S, S) HU, "label": (1, S, S)}``
            MetaTensors (the chain of prepare.json).
        dataset_dir: a missing or empty folder, or one this preparation wrote (replaced only with ``overwrite``).

    Returns:
        the datalist (absolute paths).
    """
    raw_dir = Path(raw_dir).resolve()
    datasets.check_folders(raw_dir, dataset_dir)
    entries = ctseg_datalist(raw_dir)
    split = split_entries(entries, style_patient, style_slice, num_eval_patients, raw_dir)
    settings = {"image_size": int(image_size), "style_patient": split["style"]["patient_id"],
                "style_slice": style_slice, "num_eval_patients": int(num_eval_patients), "raw_dir": str(raw_dir)}
    with datasets.write_dataset(dataset_dir, bundle=BUNDLE, overwrite=overwrite, settings=settings) as work:
        (work / "images").mkdir()
        (work / "labels").mkdir()
        written: dict[str, dict] = {}
        for entry in tqdm(entries, desc="ctstyle preparation", unit="slice"):
            try:
                out = transform({"image": entry["image"], "label": entry["label"]})
            except Exception as err:  # MONAI's Compose wraps the chain's BundleInputError
                found = find_input_error(err)
                if found is None:
                    raise
                raise found from None
            if tuple(out["image"].shape) != (1, image_size, image_size):
                raise BundleInputError(f"the preparation chain gave {tuple(out['image'].shape)}, not (1, {image_size}, "
                                       f"{image_size})", field="image_size",
                                       hint="the chain's Resized must use the same image_size")
            stem = f"{safe_name(entry['patient_id'])}_{Path(entry['label']).name.split('.')[0].replace('label_', '')}"
            affine = np.asarray(out["image"].affine, dtype=np.float64)
            _save(out["image"][0].numpy().astype(np.float32), affine, work / "images" / f"{stem}.nii.gz")
            _save(out["label"][0].numpy().round().astype(np.uint8), affine, work / "labels" / f"{stem}.nii.gz")
            written[entry["label"]] = {"patient_id": entry["patient_id"], "image": f"images/{stem}.nii.gz",
                                       "label": f"labels/{stem}.nii.gz", "source": entry["label"]}
        datalist = {"style": written[split["style"]["label"]],
                    "evaluation": [written[e["label"]] for e in split["evaluation"]],
                    "training": [written[e["label"]] for e in split["training"]],
                    "image_size": int(image_size)}
        datasets.save_datalist(work, datalist, bundle=BUNDLE, settings=settings)
    logger.info("prepared %s: style slice of %s, %d evaluation and %d training slices", dataset_dir,
                settings["style_patient"], len(datalist["evaluation"]), len(datalist["training"]))
    return load_datalist(dataset_dir)


def run_preparation(raw_dir: str | Path, dataset_dir: str | Path, transform: Callable[[dict], dict], *,
                    demo_raw_dir: str | Path, demo_dataset_dir: str | Path, demo_subjects: int = 12,
                    demo_slices_per_subject: int = 2, demo_size: int = 256, seed: int = 0, **kwargs) -> dict:
    """The ``preparation`` run id: the demo cohort on the demo path, then :func:`prepare_dataset`."""
    from .demo_cohort import write_demo_cohort

    raw = datasets.raw_folder(
        raw_dir, dataset_dir, demo_raw_dir=demo_raw_dir, demo_dataset_dir=demo_dataset_dir,
        write_demo=lambda path: write_demo_cohort(path, subjects=demo_subjects, size=demo_size, seed=seed,
                                                   slices_per_subject=demo_slices_per_subject),
        what="<PatientID>/ct_sNNN.nii.gz + label_sNNN.nii.gz slice pairs")
    return prepare_dataset(raw, dataset_dir, transform, **kwargs)


def load_datalist(dataset_dir: str | Path, image_size: int | None = None) -> dict:
    """The prepared ctstyle datalist (absolute paths); ``image_size``, when given, must be the prepared one."""
    datalist = datasets.load_datalist(dataset_dir, bundle=BUNDLE, expected={"image_size": image_size})
    if not datalist["training"]:
        raise BundleInputError("the datalist has no training slices", path=Path(dataset_dir) / datasets.DATALIST,
                               field="training", hint="prepare a cohort with more patients")
    return datalist


def check_generator_fits(image_size: int, num_levels: int) -> None:
    """Refuse a generator depth that the prepared slices (``image_size`` px square) cannot pass through, before a
    training writes anything (the network itself would refuse the first batch): the sides must be multiples of
    ``2**num_levels`` and the bottleneck at least 2 px (instance normalisation)."""

    def fits(levels: int) -> bool:
        step = map_size_multiple(levels)
        return image_size % step == 0 and image_size // step >= 2

    if not fits(num_levels):
        step = map_size_multiple(num_levels)
        deepest = max((levels for levels in range(num_levels) if fits(levels)), default=0)
        raise BundleInputError(f"{num_levels} levels halve the map {num_levels} times: its sides must be multiples of "
                               f"{step} px and at least {2 * step} px, the dataset's slices are {image_size} px",
                               field="network#num_levels", hint=f"pass --network#num_levels {deepest} or fewer, or "
                               f"prepare the dataset at a multiple of {2 * step} px")


def model_inputs(datalist: dict) -> dict:
    """What inference needs, recorded with the trained generator: the map size and the label convention."""
    return {"image_size": int(datalist["image_size"]), "label_values": list(LABEL_VALUES),
            "segment_names": list(SEGMENT_NAMES), "hu_window": [-1000.0, 500.0]}
