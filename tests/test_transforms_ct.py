"""CT intensity window: ScaleHU / ScaleHUd / ClipHU and the inverse hu_from_scaled."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from gan_core.transforms import HU_MAX, HU_MIN, ClipHU, ClipHUd, ScaleHU, ScaleHUd, hu_from_scaled


def _ct(values, affine=None):
    affine = (
        torch.diag(torch.tensor([-0.7, -0.7, 2.5, 1.0], dtype=torch.float64)) if affine is None else affine
    )
    return MetaTensor(
        torch.as_tensor(values, dtype=torch.float32), affine=affine, meta={"filename_or_obj": "ct"}
    )


def test_scale_hu_maps_window_ends_and_clips():
    img = _ct([[[[-3000.0, -1000.0, -250.0, 500.0, 3000.0]]]])
    out = ScaleHU()(img)
    np.testing.assert_allclose(out.numpy().ravel(), [-1.0, -1.0, 0.0, 1.0, 1.0], atol=1e-7)
    assert out.dtype == torch.float32


def test_scale_hu_keeps_metatensor_affine_and_meta():
    img = _ct(torch.full((1, 4, 5, 3), 40.0))
    out = ScaleHU()(img)
    assert isinstance(out, MetaTensor)
    assert out.shape == img.shape
    torch.testing.assert_close(out.affine, img.affine)
    assert out.meta["filename_or_obj"] == "ct"


def test_hu_from_scaled_inverts_inside_the_window():
    rng = np.random.default_rng(0)
    hu = rng.uniform(HU_MIN, HU_MAX, size=(1, 8, 8, 4))
    back64 = hu_from_scaled(ScaleHU()(torch.as_tensor(hu, dtype=torch.float64)))
    assert back64.dtype == torch.float64
    np.testing.assert_allclose(back64.numpy(), hu, atol=1e-9)
    back32 = hu_from_scaled(ScaleHU()(_ct(hu)).numpy())
    assert isinstance(back32, np.ndarray)
    np.testing.assert_allclose(back32, hu, atol=2e-4)


def test_hu_from_scaled_of_clipped_values_is_the_window_edge():
    np.testing.assert_allclose(hu_from_scaled(ScaleHU()(_ct([-1500.0, 900.0])).numpy()), [HU_MIN, HU_MAX])
    np.testing.assert_allclose(hu_from_scaled(np.array([-1.2, 1.5])), [HU_MIN, HU_MAX])


def test_dictionary_twins_touch_only_their_keys():
    data = {"image": _ct(torch.full((1, 2, 2, 2), 800.0)), "mask": torch.ones(1, 2, 2, 2)}
    scaled = ScaleHUd(keys="image")(data)
    assert torch.all(scaled["image"] == 1.0)
    assert scaled["mask"] is data["mask"]
    clipped = ClipHUd(keys="image")(data)
    assert torch.all(clipped["image"] == HU_MAX)
    assert isinstance(clipped["image"], MetaTensor)


def test_clip_hu_rejects_an_empty_window():
    with pytest.raises(ValueError):
        ClipHU(hu_min=100.0, hu_max=-100.0)
