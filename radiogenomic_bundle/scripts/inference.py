"""Radiogenomic inference: every background slice x every gene profile -> synthetic CT slice (HU) + nodule mask.

Inputs: background slices (2D NIfTI in HU, e.g. a prepared dataset's ``backgrounds/``) and gene profiles, either
standardised ``.npy`` vectors (as the preparation writes them) or raw columns of a GEO-style gene table
(``gene_table`` + column names), standardised with the trained model's own statistics. The model comes from
its record (:mod:`gan_core.models`), so no prepared dataset is needed.

Outputs, in ``output_dir`` (built in a private work folder and swapped into place when complete)::

    bNN_gMM_image.nii.gz   float32 HU, the background's geometry; header built fresh (descrip "SYNTHETIC ...")
    bNN_gMM_mask.nii.gz    uint8 {0, 1} nodule mask, same geometry
    bNN_gMM.png            background | synthetic | mask | object weight map, titled by index
    dicom/bNN_gMM/ct.dcm   with ``dicom``: the slice as a CT image in HU with the background's geometry, and
    dicom/bNN_gMM/seg.dcm  its nodule mask as a DICOM SEG that references it; a new study per pair, a pseudonymous
                           patient, marked SYNTHETIC (:mod:`gan_core.io.synthetic_dicom`)
    manifest.json          the inputs behind each index (backgrounds, profiles), and one record per pair
    run_info.json          the command, settings and versions

Names and titles use indices only, so no identifier of an input reaches a synthetic file; ``manifest.json``
maps the indices back to the inputs for the user who owns them.
"""

from __future__ import annotations

import json
import logging
import os
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
from gan_core.transforms import ScaleHU, hu_from_scaled

from .genes import read_gene_table
from .prepare import load_datalist, standardise_genes
from .synthetic_dicom import write_synthetic_ct_nodule

__all__ = ["example_inputs", "fixed_noise", "load_background", "load_gene_profiles", "prepared_backgrounds",
           "prepared_profiles", "synthesise"]

logger = logging.getLogger(__name__)

KIND = "radiogenomic inference"
SYNTHETIC_DESCRIP = b"SYNTHETIC gan-bundles radiogenomic"

# A lung CT slice holds air / lung parenchyma; a slice whose darkest pixel is brighter is not CT in HU.
MAX_DARKEST_HU = -500.0


def prepared_backgrounds(dataset_dir: str | os.PathLike, num_backgrounds: int) -> list[str]:
    """``num_backgrounds`` background slices spread evenly over a prepared dataset's (held-out patients first)."""
    entries = load_datalist(dataset_dir)["backgrounds"]
    entries = [b for b in entries if b["split"] == "validation"] + [b for b in entries if b["split"] != "validation"]
    picks = np.unique(np.linspace(0, len(entries) - 1, min(num_backgrounds, len(entries))).round().astype(int))
    return [entries[i]["image"] for i in picks]


def prepared_profiles(dataset_dir: str | os.PathLike, num_profiles: int) -> list[str]:
    """The standardised gene vectors of the first ``num_profiles`` patients of a prepared dataset (held-out first)."""
    datalist = load_datalist(dataset_dir)
    return list(dict.fromkeys(d["genes"] for d in datalist["validation"] + datalist["training"]))[:num_profiles]


def load_background(path: str | os.PathLike, image_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A 2D NIfTI background slice in HU -> ((1, 1, S, S) scaled to [-1, 1], its 4x4 affine).

    Raises:
        BundleInputError: not a NIfTI file, not a single 2D slice, another size than the generator's, non-finite
            values, or values that are not CT in HU.
    """
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise BundleInputError("a background must be a 2D NIfTI slice in HU", path=path, field="backgrounds",
                               hint="use the prepared backgrounds (datalist 'backgrounds') or save your slice as .nii.gz")
    data, affine = read_nifti(path, "backgrounds")
    plane = np.squeeze(data)
    if plane.ndim != 2 or plane.shape != (image_size, image_size):
        raise BundleInputError(
            f"background has shape {data.shape}, the generator needs one {image_size} x {image_size} slice",
            path=path, field="backgrounds",
            hint=f"prepare the backgrounds at the model's image_size ({image_size})",
        )
    if not np.isfinite(plane).all():
        raise BundleInputError("background contains NaN or infinite values", path=path, field="backgrounds",
                               hint="pass a slice with finite HU values")
    if plane.min() > MAX_DARKEST_HU:
        raise BundleInputError(
            f"background does not look like a lung CT slice in HU (darkest value {plane.min():.1f}, "
            f"no air or lung below {MAX_DARKEST_HU:g} HU)",
            path=path, field="backgrounds", hint="pass CT slices in Hounsfield units, not normalised images",
        )
    scaled = ScaleHU()(torch.from_numpy(plane)).as_subclass(torch.Tensor)
    return scaled.float()[None, None], np.asarray(affine, dtype=np.float64)


def _load_npy_profile(path: Path, num_genes: int) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BundleInputError(f"cannot read the gene profile ({err})", path=path, field="gene_profiles",
                               hint="a profile is a .npy vector as written by the preparation") from err
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != num_genes:
        raise BundleInputError(
            f"gene profile has {values.size} values, the generator was trained on {num_genes} genes",
            path=path, field="gene_profiles",
            hint="pass raw profiles as columns of a gene table (--gene_table), which are ordered and standardised "
            "with the model's statistics",
        )
    return values


def load_gene_profiles(profiles: Sequence[str | os.PathLike], model: Model,
                       gene_table: str | os.PathLike | None = None) -> torch.Tensor:
    """Gene profiles -> (P, G) float32 standardised vectors in the model's gene order.

    Args:
        profiles: with ``gene_table``, column names (patient IDs) of that table (raw expression); without it,
            standardised ``.npy`` vectors.
        model: the trained model (its record holds the gene names and standardisation statistics).

    Raises:
        BundleInputError: unreadable profile, another gene count, a missing trained gene or column, NaN values.
    """
    inputs = model.inputs
    num_genes = len(inputs["gene_names"])
    if gene_table is not None:
        table = read_gene_table(gene_table).subset([str(p) for p in profiles])
        vectors = standardise_genes(table.values, table.gene_names, inputs, gene_table)
        sources = [Path(gene_table)] * len(profiles)
    else:
        vectors = np.stack([_load_npy_profile(Path(p), num_genes) for p in profiles])
        sources = [Path(p) for p in profiles]
    for vector, source in zip(vectors, sources, strict=True):
        bad = np.flatnonzero(~np.isfinite(vector))
        if bad.size:
            raise BundleInputError(f"gene profile has {bad.size} NaN / infinite values (first at index {bad[0]})",
                                   path=source, field="gene_profiles",
                                   hint="impute or drop the missing genes as the preparation does")
    return torch.from_numpy(np.asarray(vectors, dtype=np.float32))


def fixed_noise(noise_dim: int, seed: int = 0) -> torch.Tensor:
    """(1, noise_dim) N(0, 1) noise from ``seed``; every pair uses it, so only background and genes vary."""
    return torch.randn(1, noise_dim, generator=torch.Generator().manual_seed(seed))


def example_inputs(model: Model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(background (1, 1, S, S), genes (1, G), noise (1, noise_dim)): inputs for export checks."""
    size, genes, noise = int(model.network["image_size"]), int(model.network["num_genes"]), int(model.network["noise_dim"])
    return torch.rand(1, 1, size, size) * 2 - 1, torch.randn(1, genes), torch.randn(1, noise)


def _save_synthetic(data: np.ndarray, affine: np.ndarray, dtype, path: Path) -> None:
    """A NIfTI with a fresh header: the geometry of the input only, ``descrip`` marking it SYNTHETIC."""
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = SYNTHETIC_DESCRIP
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


@torch.no_grad()
def synthesise(
    model: Model,
    backgrounds: Sequence[str | os.PathLike],
    gene_profiles: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    gene_table: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    dicom: bool = True,
    bundle_version: str = "unknown",
    settings: dict | None = None,
) -> list[dict]:
    """Run the trained generator on every background x profile pair; layout in the module docstring.

    Args:
        model: the trained model (:func:`gan_core.models.read_model`).
        backgrounds: 2D NIfTI slices in HU.
        gene_profiles: standardised ``.npy`` vectors, or column names of ``gene_table``.
        output_dir: a missing or empty folder, or an earlier output of this inference (replaced).
        seed: seed of the shared noise vector.
        dicom: also write each pair as DICOM CT + SEG.
        bundle_version: written into the DICOM files' SoftwareVersions.
        settings: recorded in ``run_info.json``.

    Returns:
        The manifest's pair records.
    """
    if not backgrounds or not gene_profiles:
        raise BundleInputError("inference needs at least one background and one gene profile",
                               field="backgrounds" if not backgrounds else "gene_profiles",
                               hint="pass --backgrounds \"['slice.nii.gz']\" and --gene_profiles \"['profile.npy']\"")
    generator = model.load(device)
    size = int(model.network["image_size"])
    loaded = [load_background(p, size) for p in backgrounds]
    genes = load_gene_profiles(gene_profiles, model, gene_table).to(device)
    noise = fixed_noise(int(model.network["noise_dim"]), seed).to(device).expand(len(gene_profiles), -1)
    records = []
    with atomic_dir(output_dir, record=RUN_INFO, kind=KIND, setting="inference_dir") as work:
        for i, (scaled, affine) in enumerate(loaded):
            background = scaled.to(device).expand(len(gene_profiles), -1, -1, -1)
            image, mask = generator(background, genes, noise)
            weight = generator.weight_maps(background, genes, noise)[-1]
            hu = hu_from_scaled(image.float().cpu().numpy())
            for j in range(len(gene_profiles)):
                name = f"b{i:02d}_g{j:02d}"
                _save_synthetic(hu[j, 0], affine, np.float32, work / f"{name}_image.nii.gz")
                _save_synthetic((mask[j, 0] > 0).cpu().numpy(), affine, np.uint8, work / f"{name}_mask.nii.gz")
                columns = [("background", background[j : j + 1]), ("synthetic", image[j : j + 1]),
                           ("mask", mask[j : j + 1]), ("weight map", weight[j : j + 1] * 2 - 1)]
                save_image_grid(columns, work / f"{name}.png", title=f"SYNTHETIC: background {i}, gene profile {j}")
                record = {"background_index": i, "profile_index": j, "image": f"{name}_image.nii.gz",
                          "mask": f"{name}_mask.nii.gz", "png": f"{name}.png"}
                if dicom:
                    provenance = SyntheticProvenance(bundle_name(), bundle_version, model.sha256,
                                                     index=len(records))
                    write_synthetic_ct_nodule(hu[j, 0], (mask[j, 0] > 0).cpu().numpy(), affine,
                                              work / "dicom" / name / "ct.dcm", work / "dicom" / name / "seg.dcm",
                                              provenance)
                    record["dicom"] = {"ct": f"dicom/{name}/ct.dcm", "seg": f"dicom/{name}/seg.dcm"}
                records.append(record)
        manifest = {
            "written_by": written_by(KIND), "seed": seed, "model": str(model.path), "model_sha256": model.sha256,
            "backgrounds": [str(p) for p in backgrounds],
            "gene_table": None if gene_table is None else str(gene_table),
            "gene_profiles": [str(p) for p in gene_profiles], "pairs": records,
        }
        atomic_write_text(json.dumps(manifest, indent=1), work / "manifest.json")
        write_run_info(work, run_info(KIND, settings=settings, seed=seed))
    logger.info("wrote %d synthetic slices (%d backgrounds x %d profiles) to %s",
                len(records), len(backgrounds), len(gene_profiles), output_dir)
    return records
