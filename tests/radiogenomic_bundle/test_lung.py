"""Lung mask and nodule-free background sampling on a synthetic chest with known geometry."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from scipy import ndimage
from scripts.lung import (
    LungMaskd,
    RandBackgroundCentersd,
    _dilate_mm,
    _distance_inside_mm,
    background_center_candidates,
    lung_mask,
    sample_background_centers,
)
from scripts.voi import CropVOI, CropVOId, RandAxialSlicesd

from gan_core.errors import BundleInputError

SPACING = np.array([1.5, 1.5, 2.5])
SHAPE = (96, 80, 60)
# RAS affine of an axial DICOM series (x, y flipped); the volume spans x, y, z = +-72, +-60, +-75 mm.
AFFINE = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
AFFINE[:3, 3] = [71.25, 59.25, -73.75]
LUNGS_MM = [((-50.0, -30.0, -60.0), (-10.0, 30.0, 60.0)), ((10.0, -30.0, -60.0), (50.0, 30.0, 60.0))]  # boxes
NODULE_MM, NODULE_RADIUS = np.array([-30.0, 0.0, 35.0]), 6.0
MARGIN_MM = 5.0


def _chest():
    """CT in HU (air, body ellipse of soft tissue, two box lungs with a vessel, a nodule, bowel gas) + masks."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")).reshape(3, -1)
    x, y, z = (AFFINE[:3, :3] @ idx + AFFINE[:3, 3:]).reshape(3, *SHAPE)
    ct = np.full(SHAPE, -1000.0, dtype=np.float32)
    ct[(x / 68.0) ** 2 + (y / 52.0) ** 2 <= 1.0] = 40.0
    lungs = np.zeros(SHAPE, dtype=bool)
    for lo, hi in LUNGS_MM:
        lungs |= (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
    ct[lungs] = -850.0
    ct[lungs & ((x - 30.0) ** 2 + (y - 5.0) ** 2 <= 4.0)] = 20.0  # a vessel: a hole the mask must fill
    nodule = (x - NODULE_MM[0]) ** 2 + (y - NODULE_MM[1]) ** 2 + (z - NODULE_MM[2]) ** 2 <= NODULE_RADIUS**2
    ct[nodule] = 30.0
    ct[x**2 + (y + 40.0) ** 2 + (z + 65.0) ** 2 <= 8.0**2] = -950.0  # gas below and between the lungs
    return ct, lungs, nodule


def _mt(array):
    return MetaTensor(
        torch.as_tensor(array[None]), affine=torch.as_tensor(AFFINE), meta={"filename_or_obj": "chest"}
    )


def _distance_to_box_boundary(point, lo, hi):
    """Distance (mm) from a point inside an axis-aligned box to its surface."""
    return float(np.min(np.concatenate([np.asarray(point) - lo, np.asarray(hi) - point])))


@pytest.fixture(scope="module")
def chest():
    ct, lungs, nodule = _chest()
    return ct, lungs, nodule, lung_mask(_mt(ct))


def test_lung_mask_finds_both_lungs_and_fills_vessels_and_nodule(chest):
    _, lungs, nodule, mask = chest
    dice = 2 * (mask & lungs).sum() / (mask.sum() + lungs.sum())
    assert dice > 0.98
    assert mask[nodule].all()  # nodule inside the lung is filled in
    assert not mask[0].any() and not mask[:, 0].any()  # outside air dropped
    _, n = ndimage.label(mask)
    assert n == 2


def test_lung_mask_spacing_comes_from_the_metatensor(chest):
    ct, _, _, mask = chest
    np.testing.assert_array_equal(lung_mask(ct, spacing_mm=SPACING), mask)


def test_no_lung_is_a_user_error():
    with pytest.raises(BundleInputError, match="no lung"):
        lung_mask(_mt(np.full(SHAPE, 40.0, dtype=np.float32)))


def test_background_centres_are_5_to_25_mm_inside_the_lung_and_far_from_the_nodule(chest):
    _, lungs, nodule, mask = chest
    centers = sample_background_centers(mask, nodule, AFFINE, 200, np.random.RandomState(0))
    assert len(centers) == 200
    nodule_index = np.argwhere(nodule)
    for c in centers:
        inside = [i for i, (lo, hi) in enumerate(LUNGS_MM) if np.all(c >= lo) and np.all(c <= hi)]
        assert len(inside) == 1
        d = _distance_to_box_boundary(c, *map(np.asarray, LUNGS_MM[inside[0]]))
        assert 5.0 - SPACING.max() <= d <= 25.0 + SPACING.max()
        # no nodule voxel within the 60 mm VOI box (plus a voxel for interpolation)
        c_index = np.linalg.solve(AFFINE[:3, :3], c - AFFINE[:3, 3])
        assert np.all(np.any(np.abs(nodule_index - c_index) * SPACING > 30.0 + SPACING, axis=1))


def test_candidates_respect_the_distance_band_exactly(chest):
    _, _, nodule, mask = chest
    candidates, distance = background_center_candidates(mask, nodule, SPACING)
    assert candidates.any()
    assert distance[candidates].min() >= 5.0 and distance[candidates].max() <= 25.0
    assert not candidates[nodule].any()


def test_sampling_is_deterministic_for_a_seed(chest):
    _, _, nodule, mask = chest
    a = sample_background_centers(mask, nodule, AFFINE, 5, np.random.RandomState(7))
    b = sample_background_centers(mask, nodule, AFFINE, 5, np.random.RandomState(7))
    c = sample_background_centers(mask, nodule, AFFINE, 5, np.random.RandomState(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_background_chain_gives_nodule_free_slices(chest):
    ct, _, nodule, _ = chest
    chain = Compose(
        [
            LungMaskd(image_key="image", lung_key="lung"),
            RandBackgroundCentersd(lung_key="lung", mask_key="mask", num_centers=3),
            CropVOId(keys=["image", "mask"], center_key="voi_center_mm", image_size=32),
            RandAxialSlicesd(keys=["image", "mask"], num_slices=20),
        ],
        map_items=2,
    )
    data = {"image": _mt(ct), "mask": _mt(nodule.astype(np.uint8))}
    vois = chain.set_random_state(1)(data)
    assert len(vois) == 3 and all(len(slices) == 20 for slices in vois)
    for slices in vois:
        for s in slices:
            assert s["image"].shape == (1, 32, 32)
            assert s["mask"].sum() == 0
    # the whole VOI (not just the drawn slices), sampled from the true nodule mask, holds no nodule
    for slices in vois:
        center = slices[0]["voi_center_mm"]
        assert (
            CropVOI(image_size=32, mode="nearest", padding_value=0)(
                _mt(nodule.astype(np.uint8)), center
            ).sum()
            == 0
        )
    # and lies wholly inside the scan (voi_inside_scan), so all its slices are real image
    for slices in vois:
        ones = CropVOI(image_size=32, mode="nearest", padding_value=0)(
            _mt(np.ones(SHAPE, np.uint8)), slices[0]["voi_center_mm"]
        )
        assert ones.min() == 1
    again = chain.set_random_state(1)(data)
    assert [v[0]["voi_center_mm"] for v in vois] == [v[0]["voi_center_mm"] for v in again]


def test_no_room_gives_no_centres(chest):
    _, _, nodule, mask = chest
    assert (
        len(sample_background_centers(mask, nodule, AFFINE, 5, np.random.RandomState(0), voi_mm=400.0)) == 0
    )


def test_bounding_box_shortcuts_equal_the_full_volume_transforms(chest):
    _, _, nodule, mask = chest
    allowed = mask & ~nodule
    full = ndimage.distance_transform_edt(allowed, sampling=SPACING)
    np.testing.assert_array_equal(_distance_inside_mm(allowed, SPACING), full)
    dilated = ndimage.distance_transform_edt(~nodule, sampling=SPACING) <= 5.0
    np.testing.assert_array_equal(_dilate_mm(nodule, 5.0, SPACING), dilated)
