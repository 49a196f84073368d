"""ctstyle data split and inference: label map (+ optional boundary perturbation) + seed -> CT in HU.

Data: a ctseg cohort (``<root>/<PatientID>/ct_sNNN.nii.gz`` in HU + ``label_sNNN.nii.gz`` with the six
values), as written by ``bundles.phantoms.ctseg.write_ctseg_cohort`` and read by
``bundles.io.datalists.ctseg_datalist``. :func:`split_cohort` picks ONE style slice of one patient (the
paper trains a generator per style image), holds out ``num_eval_patients`` other patients for evaluation
and trains on the slices of the rest.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bundles.engines.ctstyle import map_to_display
from bundles.engines.handlers import load_checkpoint, load_state_into, save_image_grid
from bundles.errors import BundleInputError
from bundles.fileio import atomic_write_text, replace_dir
from bundles.transforms.intensity import HU_MAX, HU_MIN, ScaleHU, hu_from_scaled
from bundles.transforms.labels import LabelToOneHot, RandPerturbLabelBoundaries, label_indices

__all__ = [
    "ensure_cohort", "split_cohort", "load_map", "load_ct", "load_slice_pair", "load_generator",
    "noise_for_seed", "generate", "run_inference",
]

logger = logging.getLogger(__name__)


def ensure_cohort(raw_dir: str | Path, subjects: int = 12, size: int = 256, seed: int = 0, **kwargs) -> Path:
    """Write the ctseg demo cohort into ``raw_dir`` when it holds no label map yet (saying so in the log)."""
    raw_dir = Path(raw_dir)
    if raw_dir.is_dir() and any(raw_dir.glob("*/label_s*.nii.gz")):
        return raw_dir
    from bundles.phantoms.ctseg import write_ctseg_cohort

    logger.info("no ctseg data in %s: writing the demo cohort (%d subjects, %d x %d, seed %d)", raw_dir, subjects,
                size, size, seed)
    return Path(write_ctseg_cohort(raw_dir, subjects=subjects, size=size, seed=seed, **kwargs))


def split_cohort(
    raw_dir: str | Path, style_patient: str | None = None, style_slice: int | None = None, num_eval_patients: int = 1
) -> dict:
    """Split a ctseg cohort into style slice, evaluation and training slices.

    Args:
        raw_dir: cohort root.
        style_patient: PatientID of the style image (default: the last patient in sorted order).
        style_slice: index of the slice among that patient's slices (default: the middle one).
        num_eval_patients: patients held out for evaluation (the ones before the style patient).

    Returns:
        ``{"style": {"patient_id", "image", "label"}, "evaluation": [...], "training": [...]}`` with the
        datalist entries ``{"patient_id", "image", "label"}``.
    """
    from bundles.io.datalists import ctseg_datalist

    entries = ctseg_datalist(raw_dir)
    patients = sorted({e["patient_id"] for e in entries})
    style_patient = patients[-1] if style_patient is None else str(style_patient)
    if style_patient not in patients:
        raise BundleInputError(f"style patient {style_patient!r} not in the cohort ({len(patients)} patients)",
                               path=raw_dir, field="style_patient", hint=f"choose one of {patients[:10]}")
    others = [p for p in patients if p != style_patient]
    if len(others) <= num_eval_patients:
        raise BundleInputError(
            f"{len(patients)} patients cannot give a style patient, {num_eval_patients} evaluation patient(s) and "
            "training patients", path=raw_dir, field="num_eval_patients", hint="lower num_eval_patients")
    eval_patients = set(others[len(others) - num_eval_patients:]) if num_eval_patients else set()
    style_slices = [e for e in entries if e["patient_id"] == style_patient]
    index = len(style_slices) // 2 if style_slice is None else int(style_slice)
    if not 0 <= index < len(style_slices):
        raise BundleInputError(f"style_slice {index} out of range: patient {style_patient} has {len(style_slices)}",
                               field="style_slice")
    return {
        "style": style_slices[index],
        "evaluation": [e for e in entries if e["patient_id"] in eval_patients],
        "training": [e for e in entries if e["patient_id"] not in eval_patients and e["patient_id"] != style_patient],
    }


def _read_2d(path: str | Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(array (X, Y) float32, 4x4 affine) of a 2D NIfTI (a trailing singleton axis is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise BundleInputError("file not found", path=path, field=field)
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise BundleInputError(f"not a readable NIfTI file ({exc})", path=path, field=field) from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise BundleInputError(f"expected a 2D slice, got shape {arr.shape}", path=path, field=field)
    return arr, img.affine


def load_map(path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """Label map -> ((1, X, Y) float32 values, affine); BundleInputError for values outside the six."""
    arr, affine = _read_2d(path, "label")
    label = torch.from_numpy(arr)[None]
    label_indices(label, path=path)
    return label, affine


def load_ct(path: str | Path, field: str = "image") -> tuple[torch.Tensor, np.ndarray]:
    """CT slice in HU -> ((1, X, Y) scaled to [-1, 1], affine)."""
    arr, affine = _read_2d(path, field)
    return ScaleHU()(torch.from_numpy(arr)[None]), affine


def load_slice_pair(image_path: str | Path, label_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A CT and its map -> (image (1, 1, X, Y) in [-1, 1], one-hot (1, 6, X, Y)); sizes must agree."""
    image, _ = load_ct(image_path)
    label, _ = load_map(label_path)
    if image.shape != label.shape:
        raise BundleInputError(f"CT {tuple(image.shape[1:])} and map {tuple(label.shape[1:])} differ in size",
                               path=label_path, field="label")
    return image[None], LabelToOneHot()(label)[None]


def load_generator(generator: torch.nn.Module, ckpt_path: str | Path, device: str | torch.device = "cpu"):
    """Load the "generator" entry of a training checkpoint (or a bare state dict); eval mode on ``device``."""
    state = load_checkpoint(ckpt_path)
    state = state.get("generator", state)
    load_state_into(generator, state, ckpt_path, "generator")
    return generator.to(device).eval()


def noise_for_seed(seed: int, noise_dim: int = 200) -> torch.Tensor:
    """(1, noise_dim) N(0, 1) noise that depends only on ``seed``."""
    return torch.randn(1, noise_dim, generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def generate(generator: torch.nn.Module, onehot: torch.Tensor, seed: int, noise_dim: int = 200) -> torch.Tensor:
    """(1, 6, X, Y) one-hot map + seed -> (1, 1, X, Y) generated CT in [-1, 1] (on the CPU)."""
    device = next(generator.parameters()).device
    return generator(onehot.to(device), noise_for_seed(seed, noise_dim).to(device)).cpu()


def _case_name(map_path: Path) -> str:
    stem = map_path.name.split(".")[0]
    return f"{map_path.parent.name}_{stem}"


def run_inference(
    generator: torch.nn.Module,
    maps: str | Path | Sequence[str | Path],
    style_image: str | Path,
    output_dir: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
    perturb: bool = False,
    perturb_magnitude_px: float = 6.0,
    perturb_smoothness_px: float = 24.0,
    noise_dim: int = 200,
) -> list[dict]:
    """Generate one CT per (map, seed) and write it in HU with the map's geometry.

    ``generator`` was trained for one style image; ``style_image`` is that image (the CT shown beside the
    results and the size the maps must have). With ``perturb`` the map is first deformed by
    :class:`~bundles.transforms.labels.RandPerturbLabelBoundaries` seeded with the same seed, giving new
    anatomy. Output per map: folder ``output_dir/<patient>_<map stem>/`` (written as ``.partial``, then
    renamed) with ``seed_NNN.nii.gz`` (float32 HU, the map's affine), ``seed_NNN.png`` (map | [perturbed
    map] | style image | generated) and, with ``perturb``, ``label_seed_NNN.nii.gz``; plus
    ``output_dir/manifest.json`` listing every file.
    """
    output_dir = Path(output_dir)
    map_paths = [Path(maps)] if isinstance(maps, (str, Path)) else [Path(m) for m in maps]
    if not map_paths:
        raise BundleInputError("no label maps given", field="maps")
    if not seeds:
        raise BundleInputError("no seeds given", field="seeds")
    style, _ = load_ct(style_image, field="style_image")
    step = 2 ** getattr(generator, "num_levels", 0)
    loaded = []
    for path in map_paths:
        label, affine = load_map(path)
        if label.shape != style.shape:
            raise BundleInputError(
                f"map size {tuple(label.shape[1:])} differs from the style image's {tuple(style.shape[1:])}",
                path=path, field="label", hint="give maps of the style image's size (resample with nearest)")
        if label.shape[1] % step or label.shape[2] % step:
            raise BundleInputError(f"map size {tuple(label.shape[1:])} is not a multiple of {step}", path=path,
                                   field="label", hint="pad or crop the map to a multiple of the generator's step")
        loaded.append((path, label, affine))
    manifest = []
    for path, label, affine in loaded:
        final = output_dir / _case_name(path)
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for seed in seeds:
            used = label
            if perturb:
                t = RandPerturbLabelBoundaries(perturb_magnitude_px, perturb_smoothness_px).set_random_state(int(seed))
                used = t(label)
            onehot = LabelToOneHot()(used)[None]
            fake = generate(generator, onehot, int(seed), noise_dim)
            hu = hu_from_scaled(fake[0, 0]).numpy().astype(np.float32)
            stem = f"seed_{int(seed):03d}"
            record = {"map": str(path), "seed": int(seed), "style_image": str(style_image), "perturbed": bool(perturb),
                      "image": str(final / f"{stem}.nii.gz"), "png": str(final / f"{stem}.png")}
            nib.save(nib.Nifti1Image(hu, affine), str(partial / f"{stem}.nii.gz"))
            columns = [("map", map_to_display(LabelToOneHot()(label)[None]))]
            if perturb:
                nib.save(nib.Nifti1Image(used[0].numpy().astype(np.uint8), affine),
                         str(partial / f"label_{stem}.nii.gz"))
                record["label"] = str(final / f"label_{stem}.nii.gz")
                columns.append(("perturbed map", map_to_display(onehot)))
            columns += [("style image", style[None]), (f"generated, seed {seed}", fake)]
            save_image_grid(columns, partial / f"{stem}.png", title=f"{path.name}: HU window [{HU_MIN:g}, {HU_MAX:g}]")
            manifest.append(record)
        replace_dir(partial, final)
        logger.info("wrote %d generated CT(s) for %s to %s", len(seeds), path, final)
    atomic_write_text(json.dumps(manifest, indent=1), output_dir / "manifest.json")
    return manifest
