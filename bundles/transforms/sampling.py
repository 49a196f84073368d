"""Sampling transforms of training: pair each item with a second one drawn from another collection."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.transforms import Randomizable, Transform


class PairBackgroundd(Randomizable, Transform):
    """Add ``data[key]`` = a background slice drawn uniformly from ``backgrounds``.

    The generator is trained to put the nodule of (image, mask, genes) onto a nodule-free background, and
    the L1 term keeps that background outside the generated mask, as at inference time.

    Args:
        backgrounds: a sequence of datalist entries ``{"image": ...}`` or plain paths. Pass a
            ``CacheDataset`` of the background entries (with the loading transforms) to draw slices already
            in memory; its transforms must be deterministic and the transforms after this one must not
            modify the drawn array in place (MONAI's random flips return new arrays).
        key: the key to add (default ``"background"``).
        source_key: the entry's key that holds the slice (default ``"image"``).
    """

    def __init__(self, backgrounds: Sequence[Mapping | str], key: str = "background", source_key: str = "image"):
        if len(backgrounds) == 0:
            raise ValueError("PairBackgroundd needs at least one background slice")
        self.backgrounds = backgrounds
        self.key = key
        self.source_key = source_key
        self._index = 0

    def randomize(self, data=None) -> None:
        self._index = int(self.R.randint(len(self.backgrounds)))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        entry = self.backgrounds[self._index]
        d = dict(data)
        d[self.key] = entry[self.source_key] if isinstance(entry, Mapping) else str(entry)
        return d
