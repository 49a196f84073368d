"""VOI crop in physical units (CropVOI / CropVOId) and its axial slices."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from scripts.voi import (
    CropVOI,
    CropVOId,
    NoduleSlicesd,
    RandAxialSlicesd,
    axial_slice,
    centroid_mm,
    nodule_slice_indices,
)

from gan_core.errors import BundleInputError

# LPS-derived RAS affine as a DICOM axial series gives: x and y flipped, 0.8 x 0.8 x 2.5 mm voxels.
AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.8, 0, 35.0], [0, 0, 2.5, -90.0], [0, 0, 0, 1]])
SHAPE = (100, 90, 48)
NODULE_MM = np.array([-3.3, 4.1, -30.7])
RADIUS_MM = 7.0


def _world(shape=SHAPE, affine=AFFINE):
    """(3, X, Y, Z) RAS mm of every voxel."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:]).reshape(3, *shape)


def _mt(array, affine=AFFINE):
    return MetaTensor(
        torch.as_tensor(array[None]), affine=torch.as_tensor(affine), meta={"filename_or_obj": "x"}
    )


def _nodule_case():
    world = _world()
    inside = np.linalg.norm(world - NODULE_MM[:, None, None, None], axis=0) <= RADIUS_MM
    image = np.where(inside, 30.0, -850.0).astype(np.float32)
    return _mt(image), _mt(inside.astype(np.uint8))


def test_voi_spans_exactly_60_mm_on_a_128_grid():
    image, mask = _nodule_case()
    voi = CropVOI()(image, centroid_mm(mask))
    spacing = np.linalg.norm(np.asarray(voi.affine)[:3, :3], axis=0)
    assert voi.shape[:3] == (1, 128, 128)
    assert voi.shape[3] == 24  # 60 mm / 2.5 mm source slices
    np.testing.assert_allclose(spacing * np.array(voi.shape[1:]), [60.0, 60.0, 60.0], rtol=0, atol=1e-9)
    # the VOI keeps the source's axis directions (flipped x and y)
    np.testing.assert_allclose(np.sign(np.diag(np.asarray(voi.affine)[:3, :3])), [-1, -1, 1])


def test_through_plane_spacing_is_configurable_and_still_60_mm():
    image, mask = _nodule_case()
    voi = CropVOI(image_size=32, slice_spacing_mm=1.3)(image, centroid_mm(mask))
    assert voi.shape == (1, 32, 32, 46)  # round(60 / 1.3)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(voi.affine)[:3, 2]) * 46, 60.0)


def test_nodule_centroid_lands_in_the_centre_of_the_voi():
    image, mask = _nodule_case()
    center = centroid_mm(mask)
    assert np.linalg.norm(center - NODULE_MM) < 0.3  # voxelised sphere
    out = CropVOId(keys=["image", "mask"], mask_key="mask")({"image": image, "mask": mask})
    np.testing.assert_allclose(out["voi_center_mm"], center)
    voi_affine = np.asarray(out["mask"].affine)
    grid_middle = voi_affine[:3, :3] @ ((np.array(out["mask"].shape[1:]) - 1) / 2) + voi_affine[:3, 3]
    np.testing.assert_allclose(grid_middle, center, atol=1e-9)
    # the resampled (nearest-neighbour) mask's own centroid is within half a source voxel of the middle
    assert np.all(np.abs(centroid_mm(out["mask"]) - center) <= 0.5 * np.array([0.8, 0.8, 2.5]))
    assert out["mask"].dtype == torch.uint8 and set(np.unique(out["mask"].numpy())) == {0, 1}
    # nodule intensity came along with the mask (image linear, mask nearest)
    np.testing.assert_allclose(out["image"][0, 62:66, 62:66, 11:13].numpy(), 30.0)


def test_linear_function_of_position_is_reproduced_so_the_affine_is_right():
    world = _world()
    ramp = (0.7 * world[0] - 0.2 * world[1] + 1.1 * world[2]).astype(np.float64)
    center = np.array([5.0, -3.0, -40.0])  # box wholly inside the scan
    voi = CropVOI(image_size=40, slice_spacing_mm=3.0)(_mt(ramp), center)
    voi_world = _world(voi.shape[1:], np.asarray(voi.affine))
    expected = 0.7 * voi_world[0] - 0.2 * voi_world[1] + 1.1 * voi_world[2]
    np.testing.assert_allclose(voi[0].numpy(), expected, atol=1e-3)


def test_outside_the_scan_is_padded_with_air():
    center = AFFINE[:3, :3] @ np.array([2.0, 3.0, 1.0]) + AFFINE[:3, 3]  # next to a corner
    voi = CropVOI(image_size=64)(_mt(np.full(SHAPE, 40.0, dtype=np.float32)), center)
    index = np.linalg.inv(AFFINE) @ np.vstack(
        [_world(voi.shape[1:], np.asarray(voi.affine)).reshape(3, -1), np.ones(64 * 64 * 24)]
    )
    outside = np.any((index[:3] < -0.5) | (index[:3] > np.array(SHAPE)[:, None] - 0.5), axis=0).reshape(
        voi.shape[1:]
    )
    values = voi[0].numpy()
    assert 0.3 < outside.mean() < 0.95
    assert np.all(values[outside] == -1000.0)
    assert np.all(values[~outside] == 40.0)
    mask_voi = CropVOI(image_size=64, mode="nearest", padding_value=0)(_mt(np.ones(SHAPE, np.uint8)), center)
    assert np.array_equal(mask_voi[0].numpy() == 1, ~outside)


def test_nodule_slices_are_2d_with_their_own_affine():
    image, mask = _nodule_case()
    chain = Compose([CropVOId(keys=["image", "mask"]), NoduleSlicesd(keys=["image", "mask"])])
    voi = CropVOId(keys=["image", "mask"])({"image": image, "mask": mask})
    slices = chain({"image": image, "mask": mask})
    assert [s["slice_index"] for s in slices] == nodule_slice_indices(voi["mask"])
    assert 4 <= len(slices) <= 7  # 14 mm diameter over 2.5 mm slices
    for s in slices:
        k = s["slice_index"]
        assert s["image"].shape == (1, 128, 128) and s["mask"].shape == (1, 128, 128)
        assert s["mask"].sum() > 0
        np.testing.assert_array_equal(s["image"].numpy(), voi["image"][..., k].numpy())
        pixel = np.array([17.0, 90.0, 0.0, 1.0])
        np.testing.assert_allclose(
            np.asarray(s["image"].affine) @ pixel,
            np.asarray(voi["image"].affine) @ (pixel + [0, 0, k, 0]),
            atol=1e-9,
        )


def test_axial_slice_keeps_meta():
    image, _ = _nodule_case()
    s = axial_slice(image, 5)
    assert s.shape == (1, *SHAPE[:2]) and s.meta["filename_or_obj"] == "x"
    assert s.affine.shape == (4, 4)


def test_random_slices_are_distinct_deterministic_and_never_pure_padding():
    voi = np.full((1, 8, 8, 30), -700.0, dtype=np.float32)
    voi[..., 25:] = -1000.0  # five slices outside the scan
    data = {"image": _mt(voi[0])}
    pick = RandAxialSlicesd(keys="image", num_slices=20)
    first = [d["slice_index"] for d in pick.set_random_state(3)(data)]
    again = [d["slice_index"] for d in pick.set_random_state(3)(data)]
    assert first == again and len(set(first)) == 20 and max(first) < 25
    assert first != [d["slice_index"] for d in pick.set_random_state(4)(data)]
    few = RandAxialSlicesd(keys="image", num_slices=40).set_random_state(0)(data)
    assert [d["slice_index"] for d in few] == list(range(25))


def test_empty_mask_is_a_user_error():
    image, mask = _nodule_case()
    with pytest.raises(BundleInputError, match="empty"):
        CropVOId(keys=["image", "mask"])({"image": image, "mask": mask * 0})


def test_plain_tensor_is_refused():
    with pytest.raises(TypeError, match="MetaTensor"):
        CropVOI()(torch.zeros(1, 4, 4, 4), [0.0, 0.0, 0.0])
