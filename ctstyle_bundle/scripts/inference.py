"""ctstyle inference: label map (+ optional boundary perturbation) + seed -> CT in HU.

The trained model comes from its record (:mod:`gan_core.models`), so inference needs no prepared dataset: label
maps are 2D NIfTI files with the six values (0, 50, 100, 150, 200, 230) at the model's size. By default the
maps of a prepared dataset's evaluation patients are used.
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
from gan_core.figures import save_image_grid
from gan_core.fileio import atomic_dir, atomic_path, atomic_write_text, written_by
from gan_core.io.nifti import read_nifti
from gan_core.io.synthetic_dicom import SyntheticProvenance
from gan_core.models import Model
from gan_core.runs import RUN_INFO, run_info, write_run_info
from gan_core.transforms import HU_MAX, HU_MIN, ScaleHU, hu_from_scaled

from .labels import LabelToOneHot, RandPerturbLabelBoundaries, label_indices
from .synthetic_dicom import write_synthetic_ct_labels
from .trainer import map_to_display

__all__ = ["example_inputs", "load_map", "load_ct", "load_slice_pair", "noise_for_seed", "generate",
           "prepared_maps", "prepared_style_image", "run_inference"]

KIND = "ctstyle inference"

logger = logging.getLogger(__name__)


def prepared_maps(dataset_dir: str | Path) -> list[str]:
    """The label maps of a prepared dataset's evaluation patients."""
    from .prepare import load_datalist

    return [e["label"] for e in load_datalist(dataset_dir)["evaluation"]]


def prepared_style_image(dataset_dir: str | Path) -> str | None:
    """The style CT of a prepared dataset (shown beside the results), or ``None`` without a prepared dataset."""
    from .prepare import load_datalist

    if not (Path(dataset_dir) / "datalist.json").is_file():
        return None
    return load_datalist(dataset_dir)["style"]["image"]


def example_inputs(model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """(one-hot map (1, 6, S, S), noise (1, noise_dim)): inputs for export checks."""
    size = int(model.inputs["image_size"])
    onehot = torch.nn.functional.one_hot(torch.zeros(1, size, size, dtype=torch.long), 6).permute(0, 3, 1, 2).float()
    return onehot, torch.randn(1, int(model.network["noise_dim"]))


def _read_2d(path: str | Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(array (X, Y) float32, 4x4 affine) of a 2D NIfTI (a trailing singleton axis is dropped)."""
    arr, affine = read_nifti(path, field)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise BundleInputError(f"expected a 2D slice, got shape {arr.shape}", path=path, field=field,
                               hint='pass one 2D NIfTI slice')
    return arr, affine


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
                               path=label_path, field="label", hint='pass a CT slice and its own label map')
    return image[None], LabelToOneHot()(label)[None]


def noise_for_seed(seed: int, noise_dim: int = 200) -> torch.Tensor:
    """(1, noise_dim) N(0, 1) noise that depends only on ``seed``."""
    return torch.randn(1, noise_dim, generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def generate(generator: torch.nn.Module, onehot: torch.Tensor, seed: int, noise_dim: int = 200) -> torch.Tensor:
    """(1, 6, X, Y) one-hot map + seed -> (1, 1, X, Y) generated CT in [-1, 1] (on the CPU)."""
    device = next(generator.parameters()).device
    return generator(onehot.to(device), noise_for_seed(seed, noise_dim).to(device)).cpu()


def run_inference(
    model: Model,
    maps: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    *,
    style_image: str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    perturb: bool = False,
    perturb_magnitude_px: float = 6.0,
    perturb_smoothness_px: float = 24.0,
    device: str | torch.device = "cpu",
    dicom: bool = True,
    bundle_version: str = "unknown",
    settings: dict | None = None,
) -> list[dict]:
    """Generate one CT per (map, seed) and write it in HU with the map's geometry.

    The generator was trained for one style image; ``style_image`` (optional) is that image, shown beside the
    results. With ``perturb`` the map is first deformed by
    :class:`~scripts.labels.RandPerturbLabelBoundaries` seeded with the same seed, giving new anatomy.
    Output (a missing or empty folder, or an earlier output of this inference, replaced): per map a folder
    ``mapNN/`` with ``seed_NNN.nii.gz`` (float32 HU, the map's affine, ``descrip`` SYNTHETIC), ``seed_NNN.png``
    (map | [perturbed map] | [style image] | generated) and, with ``perturb``, ``label_seed_NNN.nii.gz``; with
    ``dicom``, ``seed_NNN_ct.dcm`` (CT in HU) and ``seed_NNN_seg.dcm`` (the map it was generated from, one named
    segment per organ, referencing the CT; a new study per image, marked SYNTHETIC:
    :mod:`gan_core.io.synthetic_dicom`); plus ``manifest.json`` (which input map each ``mapNN`` is) and
    ``run_info.json``. ``bundle_version`` goes into the DICOM SoftwareVersions.
    """
    map_paths = [Path(maps)] if isinstance(maps, (str, Path)) else [Path(m) for m in maps]
    if not map_paths:
        raise BundleInputError("no label maps given", field="maps", hint="pass --maps \"['label.nii.gz']\"")
    if not seeds:
        raise BundleInputError("no seeds given", field="seeds", hint="pass --seeds \"[0, 1]\"")
    size = int(model.inputs["image_size"])
    style = load_ct(style_image, field="style_image")[0] if style_image is not None else None
    generator = model.load(device)
    noise_dim = int(model.network["noise_dim"])
    loaded = []
    for path in map_paths:
        label, affine = load_map(path)
        if tuple(label.shape[1:]) != (size, size):
            raise BundleInputError(
                f"map size {tuple(label.shape[1:])} differs from the model's {size} x {size}", path=path,
                field="maps", hint="resample the map to the model's size (nearest neighbour), as the preparation does")
        loaded.append((path, label, affine))
    manifest = []
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="inference_dir") as work:
        for m, (_, label, affine) in enumerate(loaded):
            folder = work / f"map{m:02d}"
            folder.mkdir()
            for seed in seeds:
                used = label
                if perturb:
                    t = RandPerturbLabelBoundaries(perturb_magnitude_px, perturb_smoothness_px).set_random_state(int(seed))
                    used = t(label)
                onehot = LabelToOneHot()(used)[None]
                fake = generate(generator, onehot, int(seed), noise_dim)
                hu = hu_from_scaled(fake[0, 0]).numpy().astype(np.float32)
                stem = f"seed_{int(seed):03d}"
                record = {"map_index": m, "seed": int(seed), "perturbed": bool(perturb),
                          "image": f"map{m:02d}/{stem}.nii.gz", "png": f"map{m:02d}/{stem}.png"}
                _save_synthetic(hu, affine, folder / f"{stem}.nii.gz")
                columns = [("map", map_to_display(LabelToOneHot()(label)[None]))]
                if perturb:
                    _save_synthetic(used[0].numpy().astype(np.uint8), affine, folder / f"label_{stem}.nii.gz")
                    record["label"] = f"map{m:02d}/label_{stem}.nii.gz"
                    columns.append(("perturbed map", map_to_display(onehot)))
                if style is not None:
                    columns.append(("style image", style[None]))
                columns.append((f"generated, seed {seed}", fake))
                if dicom:
                    provenance = SyntheticProvenance(bundle_name(), bundle_version, model.sha256,
                                                     index=len(manifest))
                    write_synthetic_ct_labels(hu, used[0].numpy(), affine, folder / f"{stem}_ct.dcm",
                                              folder / f"{stem}_seg.dcm", provenance)
                    record["dicom"] = {"ct": f"map{m:02d}/{stem}_ct.dcm", "seg": f"map{m:02d}/{stem}_seg.dcm"}
                save_image_grid(columns, folder / f"{stem}.png",
                                title=f"SYNTHETIC, map {m}: HU window [{HU_MIN:g}, {HU_MAX:g}]")
                manifest.append(record)
        atomic_write_text(json.dumps({"written_by": written_by(KIND), "model": str(model.path),
                                      "model_sha256": model.sha256, "maps": [str(p) for p in map_paths],
                                      "style_image": None if style_image is None else str(style_image),
                                      "images": manifest}, indent=1), work / "manifest.json")
        write_run_info(work, run_info(KIND, settings=settings))
    logger.info("wrote %d generated CT(s) for %d map(s) to %s", len(manifest), len(loaded), output_dir)
    return manifest


def _save_synthetic(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """A NIfTI with a fresh header: the map's geometry only, ``descrip`` marking it SYNTHETIC."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"SYNTHETIC gan-bundles ctstyle"
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
