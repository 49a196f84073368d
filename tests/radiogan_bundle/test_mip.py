"""MIP along named anatomical axes, the fast resample-and-project path, 2 mm spacing and SUV normalisation."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Spacing, Spacingd
from scripts.transforms import (
    MaximumIntensityProjection,
    MaximumIntensityProjectiond,
    NormalizeSUV,
    NormalizeSUVd,
    ResampleProject,
    ResampleProjectd,
    projection_axis,
)

PET = np.diag([-4.06, -4.06, 2.0, 1.0])  # axial DICOM series in RAS: x -> left, y -> posterior, z -> superior
PET[:3, 3] = [120.0, 80.0, -350.0]


def _image(shape=(9, 7, 11), affine=PET, seed=0):
    data = np.random.default_rng(seed).random((1, *shape), dtype=np.float32)
    return MetaTensor(torch.from_numpy(data), affine=torch.as_tensor(affine))


def _permuted(affine, order):
    """The same grid with the array axes stored in another order (columns permuted)."""
    out = affine.copy()
    out[:3, :3] = affine[:3, :3][:, order]
    return out


@pytest.mark.parametrize("plane, axis", [("coronal", 1), ("sagittal", 0), ("axial", 2)])
def test_mip_is_numpy_max_along_the_anatomical_axis(plane, axis):
    img = _image()
    mip = MaximumIntensityProjection(plane)(img)
    np.testing.assert_array_equal(mip.numpy(), img.numpy().max(axis=axis + 1))
    assert mip.shape == (1, *[n for k, n in enumerate(img.shape[1:]) if k != axis])


def test_axis_comes_from_the_affine_not_the_array_order():
    # Array stored as (Y, Z, X): anterior-posterior is array axis 0, so the coronal MIP projects axis 0.
    affine = _permuted(PET, [1, 2, 0])
    assert projection_axis(affine, "coronal") == 0
    img = _image(affine=affine)
    mip = MaximumIntensityProjection("coronal")(img)
    np.testing.assert_array_equal(mip.numpy(), img.numpy().max(axis=1))
    assert mip.meta["mip_world_axes"] == "SR"


@pytest.mark.parametrize("plane", ["coronal", "sagittal", "axial"])
def test_2d_affine_matches_the_3d_affine(plane):
    img = _image()
    mip = MaximumIntensityProjection(plane)(img)
    axis = projection_axis(PET, plane)
    keep = [k for k in range(3) if k != axis]
    world = [int(np.argmax(np.abs(PET[:3, k]))) for k in keep]
    assert mip.affine.shape == (3, 3)
    for a, b in [(0, 0), (3, 5), (8, 2)]:
        index = np.zeros(4)
        index[keep[0]], index[keep[1]], index[3] = a, b, 1.0
        expected = (PET @ index)[world]
        np.testing.assert_allclose(mip.affine.numpy() @ [a, b, 1.0], [*expected, 1.0])
    assert list(mip.pixdim) == [abs(PET[w, k]) for w, k in zip(world, keep, strict=True)]


def test_spacing_is_exactly_2mm_and_mip_keeps_it():
    img = _image((20, 12, 30))
    resampled = Spacing(pixdim=(2.0, 2.0, 2.0), mode="nearest")(img)
    assert np.array_equal(np.linalg.norm(resampled.affine.numpy()[:3, :3], axis=0), [2.0, 2.0, 2.0])
    mip = MaximumIntensityProjection()(resampled)
    assert list(mip.pixdim) == [2.0, 2.0]
    assert mip.shape == (1, round(19 * 4.06 / 2) + 1, 30)


CASES = [  # (shape, affine, pixdim, plane)
    ((21, 13, 17), PET, (2.0, 2.0, 2.0), "coronal"),
    ((16, 16, 16), np.diag([1.0, 1.0, 1.0, 1.0]), (2.5, 2.5, 2.5), "coronal"),  # down-sampling skips slices
    ((10, 9, 8), np.diag([4.0, -4.0, 2.0, 1.0]), (2.0, 2.0, 2.0), "sagittal"),  # exact half-way ties
    ((12, 15, 9), _permuted(PET, [2, 0, 1]), (3.1, 1.7, 2.0), "coronal"),
    ((14, 11, 13), np.diag([-0.9, 3.3, 1.2, 1.0]), (2.0, 2.0, 2.0), "axial"),
]


@pytest.mark.parametrize("shape, affine, pixdim, plane", CASES)
def test_fast_path_equals_resample_then_project_bit_for_bit(shape, affine, pixdim, plane):
    img = _image(shape, affine, seed=sum(shape))
    slow = MaximumIntensityProjection(plane)(Spacing(pixdim=pixdim, mode="nearest")(img))
    fast = ResampleProject(pixdim, plane)(img)
    assert fast.shape == slow.shape and fast.dtype == slow.dtype == torch.float32
    assert torch.equal(fast.as_tensor(), slow.as_tensor())
    np.testing.assert_allclose(fast.affine.numpy(), slow.affine.numpy(), atol=1e-9)


def test_fast_path_random_grids_and_dictionary_twins():
    rng = np.random.default_rng(7)
    for trial in range(6):
        shape = tuple(int(n) for n in rng.integers(4, 24, size=3))
        affine = np.diag([*(rng.uniform(0.6, 5.0, size=3) * rng.choice([-1, 1], size=3)), 1.0])
        affine[:3, 3] = rng.uniform(-200, 200, size=3)
        affine = _permuted(affine, rng.permutation(3))
        pixdim = tuple(rng.uniform(0.8, 4.5, size=3))
        plane = ("coronal", "sagittal", "axial")[trial % 3]
        data = {"image": _image(shape, affine, seed=trial)}
        slow = Compose([Spacingd("image", pixdim=pixdim, mode="nearest"), MaximumIntensityProjectiond("image", plane)])
        a, b = slow(data)["image"], ResampleProjectd("image", pixdim=pixdim, plane=plane)(data)["image"]
        assert torch.equal(a.as_tensor(), b.as_tensor()), (shape, affine, pixdim, plane)
        np.testing.assert_allclose(a.affine.numpy(), b.affine.numpy(), atol=1e-9)


def test_picked_indices_skip_and_repeat_source_slices():
    img = _image((16, 16, 16), np.eye(4))
    picks = ResampleProject((2.5, 0.5, 1.0)).picked_indices(img)
    assert len(torch.unique(picks[0])) < 16  # 2.5 mm from 1 mm: some slices never picked
    assert len(picks[1]) == 31 and len(torch.unique(picks[1])) == 16  # 0.5 mm: every slice, some twice
    assert torch.equal(picks[2], torch.arange(16))


def test_rotated_grid_falls_back_to_the_slow_chain():
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[2 * c, -2 * s, 0, 1.0], [2 * s, 2 * c, 0, 2.0], [0, 0, 3.0, 3.0], [0, 0, 0, 1]])
    img = _image((10, 12, 8), affine)
    slow = MaximumIntensityProjection()(Spacing(pixdim=(2.0, 2.0, 2.0), mode="nearest")(img))
    assert torch.equal(ResampleProject((2.0, 2.0, 2.0))(img).as_tensor(), slow.as_tensor())


def test_normalize_suv_clips_and_scales():
    img = MetaTensor(torch.tensor([[[[-1.0, 0.0, 15.0, 30.0, 45.0]]]]), affine=torch.as_tensor(PET))
    out = NormalizeSUV()(img)
    np.testing.assert_allclose(out.numpy().ravel(), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, img.affine)
    d = NormalizeSUVd("image", max_suv=10.0)({"image": img, "label": 3})
    np.testing.assert_allclose(d["image"].numpy().ravel(), [0.0, 0.0, 1.0, 1.0, 1.0])
    assert d["label"] == 3
    np.testing.assert_allclose(NormalizeSUV()(np.array([60.0, 3.0])), [1.0, 0.1])
