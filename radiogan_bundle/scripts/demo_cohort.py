"""Demo cohort of whole-body FDG-PET studies as real DICOM (RadioGAN's five classes), with the true SUV maps.

Model (documented in ``bundles/phantoms/README_pet.md``): an SUV volume built from ellipsoids in body-relative
coordinates (body outline, brain, heart, lungs, liver, spleen, kidneys, bladder, marrow, oesophagus) plus
class-specific lesions, blurred to PET resolution with mild noise. Each study converts SUV to activity with
its own weight, dose and uptake time, and stores it as a PET series whose SUV tags follow one of several
vendor variants (see ``VARIANTS``), so that SUV conversion can be tested against the known truth.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.sequence import Sequence
from scipy.ndimage import gaussian_filter

from gan_core.errors import BundleInputError
from gan_core.fileio import atomic_dir, atomic_write_text
from gan_core.io.dicom_series import write_series
from gan_core.phantoms import fdg_radiopharmaceutical, write_demo_record

from .datalist import CLASSES

SPACING_MM = (4.06, 4.06, 2.0)  # the paper's voxels: x (left-right), y (anterior-posterior), z (slices)
DEMO_SHAPE = (64, 40, 180)  # (X, Y, Z): 260 x 162 x 360 mm, a scaled-down body from the head to the pelvis
PAPER_SHAPE = (168, 168, 429)
F18_HALF_LIFE_S = 6586.2

# How the SUV tags are written; study i uses VARIANTS[i % len(VARIANTS)] (all appear once subjects >= 8).
VARIANTS = (
    "bqml",  # Units BQML, DecayCorrection START, DateTime tags, one RescaleSlope for the series
    "philips_suv",  # Units CNTS + Philips private SUV scale factor (7053,1000)
    "ge_slope",  # BQML, RescaleSlope varying per slice
    "admin",  # BQML, DecayCorrection ADMIN (values decay-corrected to the injection time)
    "midnight_tm",  # injected before midnight, scanned after it; Time tags only (no DateTime)
    "reprocessed",  # SeriesTime later than the first acquisition (re-processed series)
    "philips_activity",  # Units CNTS + only the activity concentration factor (7053,1009)
    "timezone",  # injection DateTime in UTC (+0000), local times with TimezoneOffsetFromUTC +0200
)


def _ellipsoid(vol: np.ndarray, center, radii, value: float, mode: str = "set") -> None:
    """Paint an axis-aligned ellipsoid (center and radii in voxels) into ``vol``, in place, inside its box."""
    lo = [max(int(np.floor(c - r)), 0) for c, r in zip(center, radii, strict=True)]
    hi = [min(int(np.ceil(c + r)) + 1, n) for c, r, n in zip(center, radii, vol.shape, strict=True)]
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        return
    grids = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)) <= 1.0
    box = vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    if mode == "set":
        box[inside] = value
    else:
        box[inside] = np.maximum(box[inside], value)


def _body_profile(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-width and half-depth of the body (relative to the torso) at body position t (0 = vertex, 1 = pelvis)."""
    head = np.clip(1.0 - ((t - 0.065) / 0.065) ** 2, 0.0, None) ** 0.5
    ts = [0.12, 0.165, 0.205, 0.45, 0.70, 1.2]
    w = np.interp(t, ts, [0.28, 0.28, 1.0, 1.0, 0.92, 0.98])
    d = np.interp(t, ts, [0.55, 0.55, 0.9, 1.0, 0.95, 0.85])
    torso = t >= 0.12
    w = np.where(torso, w, 0.42 * head)
    d = np.where(torso, d, 0.80 * head)
    return np.where(t >= 0, w, 0.0), np.where(t >= 0, d, 0.0)


def simulate_pet_suv(shape=DEMO_SHAPE, spacing_mm=SPACING_MM, label: str = "normal",
                     rng: np.random.Generator | None = None, lesions: bool = True) -> tuple[np.ndarray, dict]:
    """One whole-body FDG-PET study in SUV.

    Args:
        shape: (X, Y, Z) voxels; x runs to the patient's left, y to posterior, z (slices) to the head.
        spacing_mm: voxel size (x, y, z) in mm.
        label: one of ``CLASSES``.
        rng: random generator (body size/position, uptake, lesions, noise).
        lesions: False gives the same subject (same draws, same noise) without its lesions painted in.

    Returns:
        (suv, info): suv (X, Y, Z) float32 >= 0; info with the body size and the lesions (centres in voxels).
    """
    if label not in CLASSES:
        raise ValueError(f"label must be one of {CLASSES}, got {label!r}")
    rng = np.random.default_rng() if rng is None else rng
    noise_rng = np.random.default_rng(rng.integers(2**63))
    nx, ny, nz = shape
    # Body frame in voxels: centre (cx, cy), torso half-width W and half-depth D, vertex at slice z_top,
    # body length L (t = 1 at slice z_top - L, near the bottom of the field of view).
    cx = nx / 2 + rng.uniform(-0.06, 0.06) * nx
    cy = ny / 2 + rng.uniform(-0.06, 0.04) * ny
    half_w = rng.uniform(0.31, 0.40) * nx
    half_d = rng.uniform(0.30, 0.40) * ny
    z_top = nz - 1 - rng.uniform(0.01, 0.05) * nz
    length = z_top / rng.uniform(0.97, 1.06)

    def at(u, v, t):
        """Body-relative coordinates -> voxel coordinates."""
        return (cx + u * half_w, cy + v * half_d, z_top - t * length)

    def radii(ru, rv, rt):
        return (ru * half_w, rv * half_d, rt * length)

    def mm(r):
        return tuple(r / s for s in spacing_mm)

    suv = np.zeros(shape, dtype=np.float64)
    t = (z_top - np.arange(nz)) / length
    w, d = _body_profile(t)
    xs = (np.arange(nx)[:, None, None] - cx) / half_w
    ys = (np.arange(ny)[None, :, None] - cy) / half_d
    with np.errstate(divide="ignore"):
        body = (xs / w[None, None]) ** 2 + (ys / d[None, None]) ** 2 <= 1.0
    suv[body] = rng.uniform(0.5, 0.8)

    _ellipsoid(suv, at(0, 0.78, 0.6), radii(0.07, 0.1, 0.45), 1.4)  # vertebral marrow
    _ellipsoid(suv, at(0, 0.45, 0.31), radii(0.05, 0.07, 0.14), 1.3)  # oesophagus
    for side in (-1, 1):
        _ellipsoid(suv, at(side * 0.48, -0.05, 0.32), radii(0.36, 0.72, 0.12), 0.35)  # lungs
    _ellipsoid(suv, at(0.18, -0.3, 0.36), radii(0.3, 0.42, 0.06), rng.uniform(1.5, 6.0))  # myocardium
    _ellipsoid(suv, at(0.18, -0.3, 0.36), radii(0.18, 0.25, 0.036), 1.6)  # cardiac blood pool
    _ellipsoid(suv, at(-0.42, -0.05, 0.5), radii(0.5, 0.75, 0.075), rng.uniform(1.8, 2.6))  # liver
    spleen = rng.uniform(3.0, 5.0) if label == "lymphoma" else rng.uniform(1.5, 2.0)
    _ellipsoid(suv, at(0.55, 0.3, 0.49), radii(0.18, 0.3, 0.045), spleen)
    for side in (-1, 1):
        _ellipsoid(suv, at(side * 0.38, 0.5, 0.57), radii(0.13, 0.22, 0.05), rng.uniform(3.0, 6.0))  # kidneys
    _ellipsoid(suv, at(0, -0.35, 0.88), radii(0.22, 0.35, 0.035), rng.uniform(10.0, 28.0))  # bladder
    _ellipsoid(suv, at(0, 0.0, 0.065), radii(0.34, 0.62, 0.05), rng.uniform(6.0, 10.0))  # brain

    found = []

    def lesion(u, v, t_, radius_mm, value, elongation=1.0):
        r = mm(radius_mm)
        r = (r[0], r[1], r[2] * elongation)
        centre = at(u, v, t_)
        if lesions:
            _ellipsoid(suv, centre, r, value, mode="max")
        found.append({"centre_vox": [round(c, 2) for c in centre], "radius_mm": round(radius_mm, 2),
                        "suv": round(value, 3)})

    if label == "head_neck":
        lesion(rng.uniform(-0.08, 0.08), rng.uniform(-0.3, 0.0), rng.uniform(0.13, 0.155), rng.uniform(8, 14),
               rng.uniform(8.0, 18.0))
        for _ in range(rng.integers(0, 3)):
            lesion(rng.choice([-1, 1]) * rng.uniform(0.15, 0.25), rng.uniform(-0.2, 0.2), rng.uniform(0.13, 0.17),
                   rng.uniform(5, 9), rng.uniform(5.0, 10.0))
    elif label == "oesophagus":
        lesion(rng.uniform(-0.03, 0.03), 0.45, rng.uniform(0.22, 0.42), rng.uniform(8, 12), rng.uniform(8.0, 16.0),
               elongation=rng.uniform(2.0, 3.5))
    elif label == "lung":
        for _ in range(rng.integers(1, 3)):
            lesion(rng.choice([-1, 1]) * rng.uniform(0.35, 0.7), rng.uniform(-0.4, 0.3), rng.uniform(0.24, 0.38),
                   rng.uniform(6, 15), rng.uniform(5.0, 14.0))
    elif label == "lymphoma":
        stations = [(-0.22, 0.0, 0.15), (0.22, 0.0, 0.15), (-0.85, 0.0, 0.23), (0.85, 0.0, 0.23), (0.0, 0.1, 0.27),
                    (0.0, 0.3, 0.58), (0.1, 0.3, 0.64), (-0.4, 0.0, 0.86), (0.4, 0.0, 0.86), (-0.45, -0.2, 0.95),
                    (0.45, -0.2, 0.95)]
        for k in rng.choice(len(stations), size=rng.integers(6, 11), replace=False):
            u, v, t_ = stations[k]
            lesion(u + rng.uniform(-0.05, 0.05), v + rng.uniform(-0.1, 0.1), t_ + rng.uniform(-0.015, 0.015),
                   rng.uniform(5, 12), rng.uniform(5.0, 14.0))

    # Mild multiplicative noise, then blur to PET resolution (6 mm FWHM) and keep the air at (nearly) zero.
    suv *= 1.0 + 0.15 * noise_rng.standard_normal(shape)
    sigma_vox = [6.0 / 2.3548 / s for s in spacing_mm]
    suv = gaussian_filter(suv, sigma_vox, mode="constant")
    suv = np.clip(suv, 0.0, None).astype(np.float32)
    info = {"label": label, "half_width_vox": half_w, "half_depth_vox": half_d, "centre_vox": (cx, cy),
            "vertex_slice": z_top, "lesions": found}
    return suv, info


def _philips_private(files: list[Path], suv_scale: float | None, activity_scale: float) -> None:
    """Add the Philips PET private group (7053,00xx) to written files (inside the cohort's .partial folder)."""
    for path in files:
        ds = pydicom.dcmread(path)
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        if suv_scale is not None:
            block.add_new(0x00, "DS", pydicom.valuerep.format_number_as_ds(suv_scale))
        block.add_new(0x09, "DS", pydicom.valuerep.format_number_as_ds(activity_scale))
        ds.save_as(path, enforce_file_format=True)


def _write_study(root: Path, patient_id: str, index: int, label: str, variant: str, seed: int, shape) -> dict:
    """Write one study; return its row of ``truth/studies.csv``."""
    rng = np.random.default_rng([seed, index])
    suv, _ = simulate_pet_suv(shape, SPACING_MM, label, rng)
    nx, ny, nz = shape
    # RAS affine of an axial DICOM series (rows to the patient's left, columns to posterior, slices upwards).
    affine = np.diag([-SPACING_MM[0], -SPACING_MM[1], SPACING_MM[2], 1.0])
    affine[:3, 3] = [(nx - 1) / 2 * SPACING_MM[0] + rng.uniform(-5, 5),
                     (ny - 1) / 2 * SPACING_MM[1] + rng.uniform(-20, 0), -(nz - 1) * SPACING_MM[2] - rng.uniform(0, 40)]

    weight = round(45.0 + 55.0 * rng.uniform() ** 1.2, 1)  # kg, as written in PatientWeight
    dose = float(round(3.7e6 * weight * rng.uniform(0.85, 1.15), -4))  # Bq
    uptake_s = int(rng.uniform(50, 80) * 60)
    beds = 3
    bed_s = 150
    scan = datetime(2024, 1, 8, 8, 0) + timedelta(days=index, minutes=int(rng.integers(0, 480)))
    if variant == "midnight_tm":
        scan = datetime(2024, 1, 8, 0, 5) + timedelta(days=index, minutes=int(rng.integers(0, 20)))
    injection = scan - timedelta(seconds=uptake_s)
    decayed = dose if variant == "admin" else dose * 2.0 ** (-uptake_s / F18_HALF_LIFE_S)
    factor = weight * 1000.0 / decayed  # SUV per (Bq/ml)
    activity = suv.astype(np.float64) / factor

    def da(m):
        return m.strftime("%Y%m%d")

    def tm(m):
        return m.strftime("%H%M%S")

    def dt(m):
        return m.strftime("%Y%m%d%H%M%S")

    rp = fdg_radiopharmaceutical(tm(injection), dose)
    if variant == "timezone":
        utc = injection - timedelta(hours=2)  # local clock is UTC+2
        rp.RadiopharmaceuticalStartDateTime = dt(utc) + "+0000"
        rp.RadiopharmaceuticalStartTime = tm(utc)  # a misleading time-only tag: the DateTime must win
    elif variant != "midnight_tm":
        rp.RadiopharmaceuticalStartDateTime = dt(injection)
    series_time = scan + timedelta(hours=2) if variant == "reprocessed" else scan
    tags = {
        "Units": "BQML", "CorrectedImage": ["ATTN", "DECY"], "DecayCorrection": "ADMIN" if variant == "admin" else "START",
        "PatientWeight": f"{weight:.1f}", "PatientSex": "O", "StudyDate": da(scan), "StudyTime": tm(scan),
        "SeriesDate": da(series_time), "SeriesTime": tm(series_time), "ContentDate": da(series_time),
        "ContentTime": tm(series_time), "RadiopharmaceuticalInformationSequence": Sequence([rp]),
        "SeriesType": ["WHOLE BODY", "IMAGE"], "NumberOfSlices": nz, "ImageType": ["ORIGINAL", "PRIMARY"],
        "AttenuationCorrectionMethod": "CTAC", "DecayFactor": pydicom.valuerep.format_number_as_ds(
            2.0 ** (uptake_s / F18_HALF_LIFE_S)),
    }
    if variant == "timezone":
        tags["TimezoneOffsetFromUTC"] = "+0200"
    activity_scale = 1.0
    if variant in ("philips_suv", "philips_activity"):
        tags["Units"] = "CNTS"
        tags["Manufacturer"] = "Philips Medical Systems"
        activity_scale = float(pydicom.valuerep.format_number_as_ds(rng.uniform(0.3, 0.5)))
        activity = activity / activity_scale  # counts; counts * (7053,1009) = Bq/ml
    elif variant == "ge_slope":
        tags["Manufacturer"] = "GE MEDICAL SYSTEMS"

    def slice_tags(k: int) -> dict:
        acquired = scan + timedelta(seconds=bed_s * min(k * beds // nz, beds - 1))
        # FrameReferenceTime: ms from the acquisition start (the series reference time of DecayCorrection START)
        # to the start of this slice's bed position; every bed lasts bed_s.
        extra = {"AcquisitionDate": da(acquired), "AcquisitionTime": tm(acquired), "ImageIndex": k + 1,
                 "FrameReferenceTime": pydicom.valuerep.format_number_as_ds((acquired - scan).total_seconds() * 1000),
                 "ActualFrameDuration": bed_s * 1000}
        if variant not in ("midnight_tm", "timezone"):
            extra["AcquisitionDateTime"] = dt(acquired)
        return extra

    study_uid = pydicom.uid.generate_uid(entropy_srcs=[str(seed), patient_id, "study"])
    series_dir = root / patient_id / f"{da(scan)}-FDG-PET-WB" / "PET_WB_AC"
    files = write_series(activity, affine, series_dir, lock=False, modality="PT", patient_id=patient_id, study_uid=study_uid,
                         dataset_tags=tags, per_slice_rescale=variant == "ge_slope", slice_tags=slice_tags,
                         series_description="PET WB AC")
    philips_suv = None
    if variant in ("philips_suv", "philips_activity"):
        philips_suv = activity_scale * factor if variant == "philips_suv" else None
        _philips_private(files, philips_suv, activity_scale)

    truth = root / "truth" / f"{patient_id}_suv.nii.gz"
    nib.save(nib.Nifti1Image(suv, affine), truth)
    return {"patient_id": patient_id, "label": label, "variant": variant, "weight_kg": f"{weight:.1f}",
            "dose_bq": f"{dose:.0f}", "uptake_s": uptake_s, "suv_per_bqml": f"{factor:.10g}",
            "series_dir": str(series_dir.relative_to(root))}


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_demo_cohort(out_dir, subjects: int = 10, seed: int = 0, shape=DEMO_SHAPE) -> Path:
    """Write the PET demo cohort (built in a work folder, swapped into place when complete).

    Layout: ``<out>/<PatientID>/<study>/<series>/1-NNN.dcm`` (PatientIDs ``PET-001``, ...), ``<out>/labels.csv``
    (patient_id,label), ``<out>/truth/<PatientID>_suv.nii.gz`` (true SUV, float32, same RAS affine) and
    ``<out>/truth/studies.csv`` (label, vendor variant, weight, dose, uptake time, SUV per Bq/ml of each study).
    Classes are balanced (study i has class ``CLASSES[i % 5]``) and study i uses ``VARIANTS[i % 8]``.

    Args:
        out_dir: the cohort folder; it must not exist or be empty.
        subjects: number of studies.
        seed: everything (anatomy, uptake, lesions, noise, times) follows from it.
        shape: (X, Y, Z) voxels of each study at 4.06 x 4.06 x 2.0 mm.
    """
    out_dir = Path(out_dir)
    if subjects < 1:
        raise BundleInputError(f"subjects must be at least 1, got {subjects}", field="subjects",
                               hint='pass --subjects 1 or more')
    with atomic_dir(out_dir, record=None, setting="out_dir") as work:
        (work / "truth").mkdir()
        rows = []
        for i in range(subjects):
            rows.append(_write_study(work, f"PET-{i + 1:03d}", i, CLASSES[i % len(CLASSES)],
                                     VARIANTS[i % len(VARIANTS)], seed, tuple(shape)))
        atomic_write_text(_csv_text([{"patient_id": r["patient_id"], "label": r["label"]} for r in rows]),
                          work / "labels.csv")
        atomic_write_text(_csv_text(rows), work / "truth" / "studies.csv")
        write_demo_record(work, "pet demo cohort", subjects=subjects, seed=seed, shape=list(shape))
    return out_dir


__all__ = ["CLASSES", "VARIANTS", "simulate_pet_suv", "write_demo_cohort"]
