"""Label-map transforms of the ctstyle bundle: validated one-hot and random boundary perturbation."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from scripts.labels import (
    LABEL_VALUES,
    LabelToOneHot,
    LabelToOneHotd,
    RandPerturbLabelBoundaries,
    RandPerturbLabelBoundariesd,
)

from gan_core.errors import BundleInputError


def toy_map(size: int = 96) -> MetaTensor:
    """Body ellipse with two lungs, a heart, a bony ring around a spinal cord (values of the paper)."""
    y, x = np.mgrid[:size, :size] / size
    m = np.zeros((size, size), np.float32)
    m[((x - 0.5) / 0.42) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1] = 50
    m[((x - 0.32) / 0.1) ** 2 + ((y - 0.45) / 0.17) ** 2 < 1] = 100
    m[((x - 0.68) / 0.1) ** 2 + ((y - 0.45) / 0.17) ** 2 < 1] = 100
    m[((x - 0.5) / 0.07) ** 2 + ((y - 0.42) / 0.08) ** 2 < 1] = 150
    m[(x - 0.5) ** 2 + (y - 0.72) ** 2 < 0.07**2] = 200
    m[(x - 0.5) ** 2 + (y - 0.72) ** 2 < 0.035**2] = 230
    affine = torch.diag(torch.tensor([0.7, 0.7, 1.0, 1.0]))
    return MetaTensor(torch.from_numpy(m)[None], affine=affine, meta={"filename_or_obj": "toy_label.nii.gz"})


def components(label_map: torch.Tensor) -> dict[int, int]:
    arr = np.asarray(label_map[0])
    return {v: ndimage.label(arr == v)[1] for v in LABEL_VALUES}


def test_one_hot_channels_and_meta():
    m = toy_map()
    onehot = LabelToOneHot()(m)
    assert onehot.shape == (6, 96, 96) and onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(0), torch.ones(96, 96))
    for s, v in enumerate(LABEL_VALUES):
        assert torch.equal(onehot[s].bool(), m[0] == v)
    assert torch.equal(onehot.affine, m.affine)
    out = LabelToOneHotd("label", output_keys="label_onehot")({"label": m})
    assert set(out) == {"label", "label_onehot"} and torch.equal(out["label_onehot"], onehot)


def test_one_hot_rejects_unknown_values_naming_them():
    m = toy_map()
    m[0, 3, 3] = 75.0
    m[0, 4, 4] = 255.0
    with pytest.raises(BundleInputError) as err:
        LabelToOneHot()(m)
    msg = str(err.value)
    assert "75" in msg and "255" in msg and "2 pixel" in msg and "toy_label.nii.gz" in msg


def test_perturbation_keeps_labels_discrete_and_topology():
    m = toy_map()
    t = RandPerturbLabelBoundaries(magnitude_px=5.0, smoothness_px=16.0)
    t.set_random_state(7)
    out = t(m)
    assert out.shape == m.shape and torch.equal(out.affine, m.affine)
    assert set(torch.unique(out).tolist()) <= set(LABEL_VALUES)
    changed = float((out != m).float().mean())
    assert 0.005 < changed < 0.2
    assert components(out) == components(m)
    # The cord stays inside the bony ring: no cord pixel touches the body or air.
    cord = np.asarray(out[0]) == 230
    ring = ndimage.binary_dilation(cord) & ~cord
    assert set(np.unique(np.asarray(out[0])[ring]).tolist()) <= {200.0}


def test_perturbation_seeds():
    m = toy_map()
    a = RandPerturbLabelBoundaries().set_random_state(1)(m)
    b = RandPerturbLabelBoundaries().set_random_state(1)(m)
    c = RandPerturbLabelBoundaries().set_random_state(2)(m)
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = RandPerturbLabelBoundariesd(["label", "other"]).set_random_state(1)({"label": m, "other": m.clone()})
    assert torch.equal(d["label"], d["other"])
    assert torch.equal(RandPerturbLabelBoundaries(magnitude_px=0.0)(m), m)
    with pytest.raises(BundleInputError):
        RandPerturbLabelBoundaries(max_gradient=1.5)


def test_joint_warp_moves_the_image_with_its_map():
    """A (CT, map) pair deformed jointly stays a pair: where the map's labels moved, the image moved with them."""
    m = toy_map()
    image = m.clone().float() / 230.0  # an "image" that shows the map's anatomy exactly
    t = RandPerturbLabelBoundariesd("label", magnitude_px=5.0, smoothness_px=16.0, image_keys="image")
    out = t.set_random_state(3)({"label": m, "image": image})
    moved = np.asarray(out["label"][0] != m[0])
    assert moved.mean() > 0.005
    shown = np.asarray(out["image"][0]) * 230.0
    nearest = np.asarray(LABEL_VALUES)[np.abs(shown[..., None] - np.asarray(LABEL_VALUES)).argmin(-1)]
    # Where the labels moved, the warped image shows the new label, not the old one (bar interpolation at edges).
    assert (nearest[moved] == np.asarray(out["label"][0])[moved]).mean() > 0.8
    assert (nearest[moved] == np.asarray(m[0])[moved]).mean() < 0.2
    assert out["image"].shape == image.shape and torch.equal(out["image"].affine, image.affine)
    # A flat image stays flat (bicubic interpolation, replicated border), and prob 0 changes neither.
    flat = RandPerturbLabelBoundariesd("label", image_keys="image").set_random_state(3)(
        {"label": m, "image": torch.full_like(image, 0.25)})
    assert torch.allclose(flat["image"], torch.full_like(image, 0.25), atol=1e-6)
    kept = RandPerturbLabelBoundariesd("label", prob=0.0, image_keys="image")({"label": m, "image": image})
    assert torch.equal(kept["label"], m) and torch.equal(kept["image"], image)
    with pytest.raises(KeyError):
        RandPerturbLabelBoundariesd("label", image_keys="ct").set_random_state(3)({"label": m, "image": image})
