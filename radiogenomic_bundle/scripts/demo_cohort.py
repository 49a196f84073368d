"""Demo cohort shaped like TCIA "NSCLC Radiogenomics" + its GEO RNA-seq table, with hidden ground truth.

Tree written by :func:`write_demo_cohort`::

    <out>/<PatientID>/<study>/<n>.000000-<description>-<id>/1-NNN.dcm   chest CT (+ a small PET for some)
    <out>/<PatientID>/<study>/1000.000000-Segmentation-<id>/1-1.dcm     DICOM SEG of the nodule
    <out>/genes.tsv          first row patient IDs, one row per gene, "NA" entries in some genes
    <out>/phenotypes.csv     patient_id, phenotype, diameter_mm, mean_hu (never read by training)

The generative model and its parameters are documented in ``bundles/phantoms/README.md``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from scipy.ndimage import distance_transform_edt, gaussian_filter

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_dir, atomic_write_text
from gan_core.io.dicom_series import write_series
from gan_core.phantoms import fdg_radiopharmaceutical, write_demo_record
from gan_core.phantoms.chest import finish, make_chest
from gan_core.phantoms.parallel import map_patients

from .seg import write_seg

PHENOTYPES = ("solid_circumscribed", "spiculated", "part_solid_ggo")

# Nodule model per phenotype: diameter range (mm), HU of the solid part, margin width (mm), lobulation
# amplitude (fraction of the radius), number of spicules.
NODULE = {
    "solid_circumscribed": {"diameter": (8.0, 25.0), "hu": (20.0, 50.0), "margin": 0.3, "lobes": 0.08, "spicules": 0},
    "spiculated": {"diameter": (12.0, 30.0), "hu": (0.0, 40.0), "margin": 0.4, "lobes": 0.25, "spicules": (16, 28)},
    "part_solid_ggo": {"diameter": (10.0, 28.0), "hu": (-650.0, -450.0), "margin": 1.5, "lobes": 0.1, "spicules": 0},
}

# Gene models (README): fractions of the usable genes carrying each programme, and effect sizes in units of
# the gene's own noise standard deviation (drawn uniformly in "gene_sd"). "default" is the calibrated demo;
# "hard" hides the phenotype signature (few genes, small effects) under twelve strong latent programmes, so
# that distances between raw gene profiles (k-NN, k-means) follow the programmes while a linear model still
# decodes the phenotype; its smaller noise sd keeps the genes' total spread on the default's log2 scale.
GENE_MODEL = {
    "gene_sd": (0.3, 1.2),
    "signature_fraction": 0.08, "signature_sd": 3.0,
    "batch_fraction": 0.40, "batch_sd": 2.0,
    "sex_fraction": 0.04, "sex_effect": 3.0,
    "programmes": 1, "programme_fraction": 0.25, "programme_sd": 2.0,
    "na_gene_fraction": 0.05,
}
GENE_MODELS = {
    "default": GENE_MODEL,
    "hard": {
        "gene_sd": (0.06, 0.24),
        "signature_fraction": 0.05, "signature_sd": 1.3,
        "batch_fraction": 0.40, "batch_sd": 2.0,
        "sex_fraction": 0.04, "sex_effect": 3.0,
        "programmes": 12, "programme_fraction": 0.5, "programme_sd": 3.0,
        "size_fraction": 0.05, "size_sd": 1.3,
        "na_gene_fraction": 0.05,
    },
}
# Cohort size of each preset when ``subjects`` is not given: 142 - 142 // 12 = 131 patients with genes.
PRESET_SUBJECTS = {"default": 24, "hard": 142}

CT_RESCALE = {"RescaleSlope": 1, "RescaleIntercept": -1024}


def _gene_model(gene_model: str) -> dict:
    if gene_model not in GENE_MODELS:
        raise BundleInputError(f"unknown gene model {gene_model!r}", field="gene_model",
                               hint=f"choose one of {', '.join(GENE_MODELS)}")
    return GENE_MODELS[gene_model]


def size_quantiles(subjects: int, seed: int) -> np.ndarray:
    """(P,) the quantile of each patient's nodule diameter within its phenotype's range, uniform in (0, 1), from a
    stream of its own (so the cohort's other draws do not depend on whether a gene model uses it)."""
    return np.random.default_rng([seed, 3]).random(subjects)


def simulate_genes(phenotype: np.ndarray, sex: np.ndarray, batch: np.ndarray, n_genes: int,
                   rng: np.random.Generator, gene_model: str = "default",
                   size: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """Log2-scale expression of ``n_genes`` usable genes plus about 5% more genes with some "NA" entries.

    Args:
        phenotype: (P,) int class index; sex: (P,) 0/1; batch: (P,) 0/1.
        n_genes: genes with no missing value.
        gene_model: a key of ``GENE_MODELS`` ("default" or "hard"), the programme fractions and effect sizes.
        size: (P,) nodule size quantiles (:func:`size_quantiles`), needed by a model with a size programme
            (``size_fraction`` > 0, the hard model): genes loading on ``Phi^-1(size)``.

    Returns:
        gene names and (n_genes + n_na_genes, P) float64 values, NaN for "NA"; the NA genes sit at random rows.

    x[g, p] = mu_g + sd_g * (signature[g, phenotype_p] + batch_g * (batch_p - 1/2) + sex_g * (sex_p - 1/2)
    + sum_k loading_gk * programme_pk + noise), each programme on its own random subset of genes
    (one programme, proliferation-like, in the default model); the hard model adds a programme whose patient
    score is the nodule's size quantile (``size_loading_g * Phi^-1(size_p)``), so its genes carry the size too.
    """
    m = _gene_model(gene_model)
    n_patients = phenotype.size
    n_na = max(1, int(round(m["na_gene_fraction"] * n_genes)))
    total = n_genes + n_na
    mu = rng.normal(6.0, 1.5, total)
    sd = rng.uniform(*m["gene_sd"], total)

    def subset(fraction):
        return rng.random(total) < fraction

    n_classes = len(PHENOTYPES)
    signature = rng.normal(0, m["signature_sd"], (total, n_classes)) * subset(m["signature_fraction"])[:, None]
    signature -= signature.mean(axis=1, keepdims=True)
    batch_effect = rng.normal(0, m["batch_sd"], total) * subset(m["batch_fraction"])
    sex_effect = m["sex_effect"] * rng.choice([-1.0, 1.0], total) * subset(m["sex_fraction"])
    loadings = [rng.normal(0, m["programme_sd"], total) * subset(m["programme_fraction"])
                for _ in range(m["programmes"])]
    scores = rng.normal(0, 1, (n_patients, m["programmes"]))  # one column per programme, N(0, 1) per patient
    programmes = sum(np.outer(loading, score) for loading, score in zip(loadings, scores.T, strict=True))
    if m.get("size_fraction", 0.0) > 0:
        if size is None:
            raise ValueError(f"the {gene_model!r} gene model needs the patients' nodule size quantiles")
        from scipy.special import ndtri

        size_loading = rng.normal(0, m["size_sd"], total) * subset(m["size_fraction"])
        programmes = programmes + np.outer(size_loading, ndtri(np.clip(size, 1e-6, 1 - 1e-6)))
    z = (signature[:, phenotype] + np.outer(batch_effect, batch - 0.5) + np.outer(sex_effect, sex - 0.5)
         + programmes + rng.normal(0, 1, (total, n_patients)))
    values = mu[:, None] + sd[:, None] * z
    na_rows = rng.choice(total, n_na, replace=False)
    for row in na_rows:
        values[row, rng.choice(n_patients, rng.integers(1, min(3, n_patients) + 1), replace=False)] = np.nan
    names = [f"GENE{i + 1:05d}" for i in range(total)]
    return names, values


def gene_table_text(patient_ids: list[str], names: list[str], values: np.ndarray) -> str:
    """GEO-style TSV: a corner cell then the patient IDs, then one row per gene; NaN written as "NA"."""
    out = io.StringIO()
    out.write("\t".join(["gene", *patient_ids]) + "\n")
    for name, row in zip(names, values, strict=True):
        out.write("\t".join([name, *("NA" if np.isnan(v) else f"{v:.3f}" for v in row)]) + "\n")
    return out.getvalue()


def _unit_vectors(rng, n):
    v = rng.normal(0, 1, (n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def draw_nodule(rng: np.random.Generator, phenotype: str, spacing: tuple[float, float, float],
                size_quantile: float | None = None):
    """One nodule on a local voxel box centred on its centre; ``size_quantile`` (in [0, 1]) places its diameter in
    its phenotype's range (default: a uniform draw from ``rng``).

    Returns:
        occupancy: (a, b, c) float32 in [0, 1] (soft margin), hu: (a, b, c) float32 HU of the nodule tissue,
        half: (3,) int half-size of the box in voxels, diameter_mm: the nominal diameter 2R.
    """
    spec = NODULE[phenotype]
    radius = rng.uniform(*spec["diameter"]) / 2  # drawn in every case, so the rest of the stream does not move
    if size_quantile is not None:
        low, high = spec["diameter"]
        radius = (low + (high - low) * float(size_quantile)) / 2
    reach = radius * 2.4 + 3 * spec["margin"] + 2.0
    half = np.ceil(reach / np.asarray(spacing)).astype(int)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2) + 1e-6
    u = np.stack([x, y, z], axis=-1) / r[..., None]
    surface = np.ones_like(r)
    for direction in _unit_vectors(rng, 6):  # broad lobes
        surface += spec["lobes"] * rng.uniform(0.3, 1.0) * np.exp(4.0 * (u @ direction - 1))
    surface *= radius / (1 + 0.5 * spec["lobes"])
    if spec["spicules"]:
        for direction in _unit_vectors(rng, rng.integers(*spec["spicules"])):  # thin spikes
            surface += radius * rng.uniform(0.6, 1.3) * np.exp(rng.uniform(25, 70) * (u @ direction - 1))
    occupancy = 1 / (1 + np.exp(-(surface - r) / spec["margin"]))
    # Shrink the box to where the nodule is, keeping its centre in the middle.
    reached = np.minimum(np.abs(np.argwhere(occupancy > 1e-3) - half).max(axis=0) + 1, half)
    keep = tuple(slice(h - n, h + n + 1) for h, n in zip(half, reached, strict=True))
    r, occupancy, half = r[keep], occupancy[keep], reached
    hu = np.full(r.shape, rng.uniform(*spec["hu"]))
    if phenotype == "part_solid_ggo":  # solid core inside the ground glass
        core = radius * rng.uniform(0.25, 0.5)
        core_occ = 1 / (1 + np.exp(-(core - r) / 0.6))
        hu = hu * (1 - core_occ) + rng.uniform(-60, 30) * core_occ
    hu += gaussian_filter(rng.normal(0, 15, r.shape), 1.0)
    return occupancy.astype(np.float32), hu.astype(np.float32), half, 2 * radius


def _place(lungs: np.ndarray, spacing, half: np.ndarray, core_mm: float, rng) -> tuple[int, int, int]:
    """A nodule centre in one lung, ``core_mm`` or more from the lung boundary, its whole box inside the volume."""
    side = rng.integers(1, 3)
    for candidate_side in (side, 3 - side):
        lung = lungs == candidate_side
        if not lung.any():
            continue
        lo = np.maximum(np.argwhere(lung).min(axis=0) - 1, 0)
        hi = np.argwhere(lung).max(axis=0) + 2
        crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        ok = distance_transform_edt(lung[crop], sampling=spacing) >= core_mm
        candidates = np.argwhere(ok) + lo
        inside = np.all((candidates >= half) & (candidates < np.asarray(lungs.shape) - half), axis=1)
        candidates = candidates[inside]
        if len(candidates):
            return tuple(int(v) for v in candidates[rng.integers(len(candidates))])
    raise RuntimeError("no room for the nodule in either lung; enlarge the volume")


def _patient(out: Path, pid: str, phenotype: str, sex: int, seed: int, size: int, slices: int, with_pet: bool,
             size_quantile: float | None = None):
    """Write one patient's CT (+ PET) series and SEG; return its phenotype row."""
    rng = np.random.default_rng([seed, 1, int(pid.split("-")[1])])
    spacing = (340.0 / size, 340.0 / size, 2.5)
    chest = make_chest(rng, (size, size, slices), spacing)
    occupancy, nodule_hu, half, diameter = draw_nodule(rng, phenotype, spacing, size_quantile)
    core = diameter / 2 * (1 + NODULE[phenotype]["lobes"]) + 3 * NODULE[phenotype]["margin"]
    centre = _place(chest.lungs, spacing, half, core + 3.0, rng)
    box = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half, strict=True))
    occupancy *= chest.lungs[box] > 0  # spicules stop at the pleura
    hu = chest.hu
    local = hu[box]
    hu[box] = local * (1 - occupancy) + np.maximum(local, nodule_hu) * occupancy
    mask = np.zeros(hu.shape, dtype=bool)
    mask[box] = occupancy >= 0.5
    image = np.round(finish(hu, rng))

    study_uid = generate_uid(entropy_srcs=["nsclc", str(seed), pid, "study"])
    date = f"{rng.integers(1990, 2010)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    study = out / pid / f"{date[4:6]}-{date[6:]}-{date[:4]}-NA-CT CHEST-{rng.integers(10000, 99999)}"
    tags = {"StudyDate": date, "SeriesDate": date, "ContentDate": date, "PatientSex": "MF"[sex],
            "PatientAge": f"{rng.integers(45, 85):03d}Y", "StudyDescription": "CT CHEST", "KVP": 120, **CT_RESCALE}
    ct_dir = study / f"3.000000-THORAX 2.5 B45f-{rng.integers(10000, 99999)}"
    files = write_series(image, chest.affine, ct_dir, lock=False, modality="CT", patient_id=pid, study_uid=study_uid,
                         dataset_tags=tags, series_description="THORAX 2.5 B45f")
    write_seg(mask, files, study / f"1000.000000-Segmentation-{rng.integers(10000, 99999)}" / "1-1.dcm")
    if with_pet:  # a small attenuation-corrected PET in the same study, which readers must skip
        pet = np.clip(gaussian_filter(image[::8, ::8, ::4] + 1000, 1.0), 0, None) * 5.0
        pet_affine = chest.affine @ np.diag([8.0, 8.0, 4.0, 1.0])
        pet_tags = {"Units": "BQML", "StudyDate": date, "SeriesDate": date, "SeriesTime": "090000",
                    "AcquisitionDate": date, "AcquisitionTime": "090000", "SeriesType": ["STATIC", "IMAGE"],
                    "CorrectedImage": ["ATTN", "DECY"], "DecayCorrection": "START",
                    "RadiopharmaceuticalInformationSequence": Sequence([fdg_radiopharmaceutical("080000", 3.7e8)])}
        write_series(pet, pet_affine, study / f"4.000000-PET AC-{rng.integers(10000, 99999)}", lock=False,
                     modality="PT", patient_id=pid, study_uid=study_uid, series_description="PET AC",
                     dataset_tags=pet_tags)
    mean_hu = float(image[mask].mean())
    return {"patient_id": pid, "phenotype": phenotype, "diameter_mm": f"{diameter:.1f}", "mean_hu": f"{mean_hu:.1f}"}


def cohort_design(subjects: int, seed: int):
    """Patient IDs, phenotype index (balanced), sex, batch, and the set of patient indices without genes."""
    rng = np.random.default_rng([seed, 0])
    ids = [f"R01-{i + 1:03d}" for i in range(subjects)]
    phenotype = rng.permutation(np.arange(subjects) % len(PHENOTYPES))
    sex = rng.integers(0, 2, subjects)
    batch = rng.integers(0, 2, subjects)
    no_genes = set(rng.choice(subjects, subjects // 12, replace=False).tolist())
    return ids, phenotype, sex, batch, no_genes


def write_demo_cohort(out_dir, subjects: int | None = None, seed: int = 0, n_genes: int = 5172, size: int = 256,
                       slices: int = 40, workers: int | None = None, gene_model: str = "default") -> Path:
    """Write the demo NSCLC radiogenomics cohort (deterministic for ``seed``) into ``out_dir``.

    Args:
        out_dir: the cohort root to create (absent or empty); built in a work folder and swapped into place.
        subjects: number of patients ``R01-001`` ...; phenotypes are balanced over the three classes. Default:
            the preset's (``PRESET_SUBJECTS``: 24 for "default", 142 for "hard", of whom 131 have genes).
        n_genes: usable genes (no "NA") in ``genes.tsv``; about 5% more genes carry "NA" entries.
        size: in-plane matrix (a 340 mm field of view); slices: number of 2.5 mm slices.
        workers: processes writing patients (default up to 4); the output does not depend on it.
        gene_model: "default" (the calibrated demo) or "hard" (raw genes do not separate the phenotypes; README).

    One patient in twelve has no RNA-seq column, and one in six also has a small PET series in its study.
    """
    out_dir = Path(out_dir)
    _gene_model(gene_model)
    if subjects is None:
        subjects = PRESET_SUBJECTS[gene_model]
    if subjects < 1:
        raise BundleInputError(f"subjects must be at least 1, got {subjects}", field="subjects",
                               hint="pass --subjects 1 or more")
    ids, phenotype, sex, batch, no_genes = cohort_design(subjects, seed)
    sized = _gene_model(gene_model).get("size_fraction", 0.0) > 0
    quantiles = size_quantiles(subjects, seed)
    with atomic_dir(out_dir, record=None, setting="out_dir") as work:
        calls = [(work, pid, PHENOTYPES[phenotype[i]], int(sex[i]), seed, size, slices, i % 6 == 5,
                  float(quantiles[i]) if sized else None) for i, pid in enumerate(ids)]
        rows = map_patients(_patient, calls, workers, "nsclc")
        with_genes = [i for i in range(subjects) if i not in no_genes]
        names, values = simulate_genes(phenotype[with_genes], sex[with_genes], batch[with_genes], n_genes,
                                       np.random.default_rng([seed, 2]), gene_model, size=quantiles[with_genes])
        atomic_write_text(gene_table_text([ids[i] for i in with_genes], names, values), work / "genes.tsv")
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["patient_id", "phenotype", "diameter_mm", "mean_hu"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(table.getvalue(), work / "phenotypes.csv")
        write_demo_record(work, "nsclc demo cohort", subjects=subjects, seed=seed, n_genes=n_genes, size=size,
                          slices=slices, gene_model=gene_model)
    return out_dir
