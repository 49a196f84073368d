"""IBSI-compliant radiomic features of 2D nodule slices, computed by MIRP (Zwanenburg & Loeck, JOSS 2023).

MIRP (``pip install mirp``, pure Python) implements the Image Biomarker Standardisation Initiative's feature
definitions (Zwanenburg et al., Radiology 2020). A nodule slice (H, W) in HU and its mask are passed as a
one-slice volume with the slice's pixel spacing, features computed ``by_slice`` (2D texture matrices, merged
over directions), grey levels discretised with a fixed bin width of 25 HU (the usual CT setting). Computing all
families costs about a second per nodule, so the evaluation runs it on a documented subsample.

:data:`FEATURES` is the small set the radiogenomic map reports, chosen to be readable next to the hand-computed
descriptors (:mod:`scripts.nodules`): intensity statistics (mean, 90th percentile, skewness,
kurtosis, interquartile range), co-occurrence texture (joint entropy, contrast, correlation) and one shape
feature (area density of the convex hull, IBSI's counterpart of solidity).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["BIN_WIDTH_HU", "FEATURES", "radiomic_features"]

logger = logging.getLogger(__name__)

BIN_WIDTH_HU = 25.0
# IBSI feature -> column name prefix in MIRP's table (the texture columns carry a settings suffix).
FEATURES: dict[str, str] = {
    "stat_mean": "stat_mean",
    "stat_p90": "stat_p90",
    "stat_skew": "stat_skew",
    "stat_kurt": "stat_kurt",
    "stat_iqr": "stat_iqr",
    "cm_joint_entr": "cm_joint_entr_",
    "cm_contrast": "cm_contrast_",
    "cm_corr": "cm_corr_",
    "morph_area_dens_conv_hull": "morph_area_dens_conv_hull",
}


def _quiet_mirp() -> None:
    for name in ("mirp", "MainProcess"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers if "mirp" not in type(h).__module__]


def radiomic_features(image_hu: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float],
                      slice_thickness_mm: float = 2.5) -> dict[str, float]:
    """The :data:`FEATURES` of one nodule slice, by MIRP.

    Args:
        image_hu: (H, W) in HU; mask: (H, W), nodule where > 0 (at least one pixel).
        spacing_mm: pixel spacing along the two array axes.
        slice_thickness_mm: the one-slice volume's thickness (affects no 2D feature).

    Returns:
        ``{feature: value}`` (NaN for a feature MIRP did not return, or for an empty mask).
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    if not mask.any():
        return {name: float("nan") for name in FEATURES}
    import warnings

    from mirp import extract_features

    _quiet_mirp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = extract_features(
            image=np.asarray(image_hu, np.float32)[None], mask=mask[None], image_modality="CT", by_slice=True,
            base_feature_families=["morphology", "statistics", "glcm"], base_discretisation_method="fixed_bin_size",
            base_discretisation_bin_width=BIN_WIDTH_HU, intensity_range=[-1000.0, 500.0],
            image_spacing=(float(slice_thickness_mm), float(spacing_mm[0]), float(spacing_mm[1])),
            export_features=True, write_features=False,
        )
    table = tables[0]
    out = {}
    for name, prefix in FEATURES.items():
        columns = [c for c in table.columns if c == prefix or (prefix.endswith("_") and c.startswith(prefix))]
        out[name] = float(table[columns[0]].iloc[0]) if columns else float("nan")
    return out
