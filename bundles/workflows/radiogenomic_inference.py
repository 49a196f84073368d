"""Radiogenomic inference: every background slice x every gene profile -> synthetic CT slice (HU) + nodule mask.

Outputs, in ``output_dir`` (written to ``<output_dir>.partial`` and renamed when complete)::

    bNN_<background>__gMM_<profile>_image.nii.gz   float32 HU, the background's shape, affine and header
    bNN_<background>__gMM_<profile>_mask.nii.gz    uint8 {0, 1} nodule mask, same geometry
    bNN_<background>__gMM_<profile>.png            background | synthetic | mask | object weight map
    manifest.json                                  one record per pair (inputs and outputs)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bundles.engines.handlers import load_checkpoint, load_state_into, save_image_grid
from bundles.errors import BundleInputError
from bundles.fileio import atomic_path, atomic_write_text, replace_dir
from bundles.transforms.intensity import ScaleHU, hu_from_scaled

__all__ = ["fixed_noise", "load_background", "load_gene_profile", "load_generator", "synthesise"]

logger = logging.getLogger(__name__)

# A lung CT slice holds air / lung parenchyma; a slice whose darkest pixel is brighter is not CT in HU.
MAX_DARKEST_HU = -500.0


def load_generator(generator: torch.nn.Module, ckpt_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load the ``"generator"`` entry of a training checkpoint (or a bare state dict), ``weights_only=True``.

    Raises:
        BundleInputError: missing file, unsafe pickle, or weights of another network / configuration.
    """
    state = load_checkpoint(ckpt_path)
    state = state.get("generator", state) if isinstance(state, dict) else state
    load_state_into(generator, state, ckpt_path, "generator")
    return generator.to(device).eval()


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".npy"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def load_background(path: str | os.PathLike, image_size: int) -> tuple[torch.Tensor, nib.Nifti1Image]:
    """A 2D NIfTI background slice in HU -> ((1, 1, S, S) scaled to [-1, 1], the NIfTI image for its geometry).

    Raises:
        BundleInputError: not a NIfTI file, not a single 2D slice, another size than the generator's, non-finite
            values, or values that are not CT in HU.
    """
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise BundleInputError("a background must be a 2D NIfTI slice in HU", path=path, field="backgrounds",
                               hint="use the prepared backgrounds (datalist 'backgrounds') or save your slice as .nii.gz")
    if not path.is_file():
        raise BundleInputError("background slice not found", path=path, field="backgrounds")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises several types for damaged files
        raise BundleInputError(f"cannot read the NIfTI file ({err})", path=path, field="backgrounds") from err
    plane = np.squeeze(data)
    if plane.ndim != 2 or plane.shape != (image_size, image_size):
        raise BundleInputError(
            f"background has shape {data.shape}, the generator needs one {image_size} x {image_size} slice",
            path=path, field="backgrounds",
            hint="prepare the backgrounds at the training image_size (prepare.json image_size)",
        )
    if not np.isfinite(plane).all():
        raise BundleInputError("background contains NaN or infinite values", path=path, field="backgrounds")
    if plane.min() > MAX_DARKEST_HU:
        raise BundleInputError(
            f"background does not look like a lung CT slice in HU (darkest value {plane.min():.1f}, "
            f"no air or lung below {MAX_DARKEST_HU:g} HU)",
            path=path, field="backgrounds", hint="pass CT slices in Hounsfield units, not normalised images",
        )
    scaled = ScaleHU()(torch.from_numpy(plane)).as_subclass(torch.Tensor)
    return scaled.float()[None, None], img


def load_gene_profile(path: str | os.PathLike, num_genes: int) -> torch.Tensor:
    """A standardised gene profile ``.npy`` (G,) -> (G,) float32.

    Raises:
        BundleInputError: unreadable file, wrong length (another gene list) or NaN / infinite entries.
    """
    path = Path(path)
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
            hint="order and standardise the profile with the preparation's gene_names.txt and gene_stats.npz",
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise BundleInputError(
            f"gene profile has {bad.size} NaN / infinite values (first at index {bad[0]})",
            path=path, field="gene_profiles", hint="impute or drop the missing genes as the preparation does",
        )
    return torch.from_numpy(values.astype(np.float32))


def fixed_noise(noise_dim: int, seed: int = 0) -> torch.Tensor:
    """(1, noise_dim) N(0, 1) noise from ``seed``; every pair uses it, so only background and genes vary."""
    return torch.randn(1, noise_dim, generator=torch.Generator().manual_seed(seed))


def _save_like(data: np.ndarray, reference: nib.Nifti1Image, dtype, path: Path) -> None:
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(data.reshape(reference.shape).astype(dtype), reference.affine, header)
    with atomic_path(path) as tmp:
        nib.save(out, tmp)


@torch.no_grad()
def synthesise(
    generator: torch.nn.Module,
    backgrounds: Sequence[str | os.PathLike],
    gene_profiles: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[dict]:
    """Run the (loaded, eval-mode) generator on every background x profile pair; layout in the module docstring.

    Args:
        generator: a generator of :mod:`bundles.networks.radiogenomic` (or its TorchScript) with attributes
            ``image_size``, ``num_genes``, ``noise_dim``.
        backgrounds: 2D NIfTI slices in HU.
        gene_profiles: standardised ``.npy`` gene vectors.
        output_dir: folder to (re)write.
        seed: seed of the shared noise vector.

    Returns:
        The manifest records ``{"background", "genes", "image", "mask", "png"}``.
    """
    if not backgrounds or not gene_profiles:
        raise BundleInputError("inference needs at least one background and one gene profile",
                               field="backgrounds" if not backgrounds else "gene_profiles")
    size, num_genes = int(generator.image_size), int(generator.num_genes)
    loaded = [load_background(p, size) for p in backgrounds]
    genes = torch.stack([load_gene_profile(p, num_genes) for p in gene_profiles]).to(device)
    noise = fixed_noise(int(generator.noise_dim), seed).to(device).expand(len(gene_profiles), -1)
    output_dir = Path(output_dir)
    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    records = []
    try:
        for i, (scaled, reference) in enumerate(loaded):
            background = scaled.to(device).expand(len(gene_profiles), -1, -1, -1)
            image, mask = generator(background, genes, noise)
            weight = generator.weight_maps(background, genes, noise)[-1]
            hu = hu_from_scaled(image.float().cpu().numpy())
            for j, profile in enumerate(gene_profiles):
                name = f"b{i:02d}_{_stem(backgrounds[i])}__g{j:02d}_{_stem(profile)}"
                _save_like(hu[j, 0], reference, np.float32, partial / f"{name}_image.nii.gz")
                _save_like((mask[j, 0] > 0).cpu().numpy(), reference, np.uint8, partial / f"{name}_mask.nii.gz")
                columns = [("background", background[j : j + 1]), ("synthetic", image[j : j + 1]),
                           ("mask", mask[j : j + 1]), ("weight map", weight[j : j + 1] * 2 - 1)]
                save_image_grid(columns, partial / f"{name}.png", title=name)
                records.append({
                    "background": str(backgrounds[i]), "genes": str(profile),
                    "image": str(output_dir / f"{name}_image.nii.gz"), "mask": str(output_dir / f"{name}_mask.nii.gz"),
                    "png": str(output_dir / f"{name}.png"),
                })
        atomic_write_text(json.dumps({"seed": seed, "pairs": records}, indent=1), partial / "manifest.json")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, output_dir)
    logger.info("wrote %d synthetic slices (%d backgrounds x %d profiles) to %s",
                len(records), len(backgrounds), len(gene_profiles), output_dir)
    return records
