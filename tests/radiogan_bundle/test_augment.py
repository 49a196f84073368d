"""DiffAugment: translations move pixels without changing them, cutouts fill one box, gradients pass, eval = identity."""

import pytest
import torch
from scripts.augment import DiffAugment


def ramp(b=6, h=16, w=24):
    """Images whose every pixel value is unique (so a moved pixel can be traced), in (0, 1)."""
    values = torch.arange(b * h * w, dtype=torch.float32).view(b, 1, h, w)
    return (values + 1) / (b * h * w + 1)


def test_translation_shifts_each_image_as_a_whole_and_fills_what_comes_in():
    torch.manual_seed(0)
    images = ramp()
    out = DiffAugment(translation=0.25, cutout=0.0, fill=-1.0)(images)
    assert out.shape == images.shape
    shifts = set()
    for i in range(images.shape[0]):
        kept = out[i, 0] != -1.0
        # find the shift from one kept pixel, then every kept pixel must match the input moved by that shift
        r, c = (int(k[0]) for k in torch.nonzero(kept, as_tuple=True))
        src = torch.nonzero(images[i, 0] == out[i, 0, r, c])
        dr, dc = r - int(src[0, 0]), c - int(src[0, 1])
        assert abs(dr) <= 4 and abs(dc) <= 6  # 0.25 * (16, 24)
        expected = torch.full_like(images[i, 0], -1.0)
        rows = slice(max(dr, 0), 16 + min(dr, 0))
        cols = slice(max(dc, 0), 24 + min(dc, 0))
        src_rows = slice(max(-dr, 0), 16 + min(-dr, 0))
        src_cols = slice(max(-dc, 0), 24 + min(-dc, 0))
        expected[rows, cols] = images[i, 0, src_rows, src_cols]
        assert torch.equal(out[i, 0], expected)
        shifts.add((dr, dc))
    assert len(shifts) > 1  # drawn per image


def test_cutout_sets_one_box_of_half_the_size_to_fill_and_leaves_the_rest():
    torch.manual_seed(1)
    images = ramp()
    out = DiffAugment(translation=0.0, cutout=0.5, fill=-1.0)(images)
    for i in range(images.shape[0]):
        cut = out[i, 0] == -1.0
        assert torch.equal(out[i, 0][~cut], images[i, 0][~cut])
        rows, cols = torch.nonzero(cut, as_tuple=True)
        # a full box is 8 x 12 (even sizes: centre +- 3.5 / 5.5 pixels); at the border it is clipped
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert 4 <= height <= 8 and 6 <= width <= 12
        assert int(cut.sum()) == height * width  # one rectangle


def test_gradients_reach_every_pixel_that_stays_and_eval_mode_is_the_identity():
    torch.manual_seed(2)
    images = ramp().requires_grad_(True)
    augment = DiffAugment()
    out = augment(images)
    out.sum().backward()
    assert int((images.grad == 1).sum()) == int((out != -1.0).sum())
    augment.eval()
    assert augment(images) is images


def test_the_same_seed_draws_the_same_augmentation():
    augment = DiffAugment()
    torch.manual_seed(3)
    first = augment(ramp())
    torch.manual_seed(3)
    assert torch.equal(augment(ramp()), first)


@pytest.mark.parametrize("translation, cutout", [(-0.1, 0.5), (0.125, 1.0)])
def test_fractions_outside_zero_to_one_are_refused(translation, cutout):
    with pytest.raises(ValueError, match="translation and cutout"):
        DiffAugment(translation=translation, cutout=cutout)
