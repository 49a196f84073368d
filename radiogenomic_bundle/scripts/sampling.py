"""Sampling transforms of training: pair each item with a second one drawn from another collection, and draw
training slices so that every patient weighs the same.

Patient-balanced sampling: a nodule spans more slices the larger (and the more spiculated) it is, so drawing
slices uniformly lets the patients with large nodules dominate (65 % of the demo's training slices are
spiculated). Instead the training dataset is a list of *slots*, ``slots_per_patient`` per patient
(:func:`patient_slots`), and :class:`PickPatientSliced` fills each slot with one of that patient's slices drawn
at random. An epoch is a permutation of the slots (any sampler works; the shards of a multi-process training stay
disjoint), and every patient is drawn equally often, whatever its number of slices. Only the patient identity
is used, never a label.
"""

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


def patient_slots(items: Sequence[Mapping], slots_per_patient: int | None = None,
                  patient_key: str = "patient_index") -> list[dict]:
    """The slot list of patient-balanced sampling: ``slots_per_patient`` slots ``{patient_key: p}`` per patient p.

    Args:
        items: the training slices, each with ``patient_key``.
        slots_per_patient: default ``round(len(items) / number of patients)`` (at least 1), so an epoch has about
            as many items as there are slices.

    Returns:
        ``[{patient_key: p}, ...]``, patient after patient, in the sorted order of the patient keys.
    """
    patients = sorted({item[patient_key] for item in items})
    if not patients:
        raise ValueError("patient_slots needs at least one item")
    if slots_per_patient is None:
        slots_per_patient = max(1, round(len(items) / len(patients)))
    if int(slots_per_patient) < 1:
        raise ValueError(f"slots_per_patient must be at least 1, got {slots_per_patient}")
    return [{patient_key: p} for p in patients for _ in range(int(slots_per_patient))]


class PickPatientSliced(Randomizable, Transform):
    """Fill a slot ``{patient_key: p}`` with a slice of patient p drawn uniformly from ``slices``.

    Args:
        slices: a sequence of slice items (e.g. a ``CacheDataset`` of the training slices with deterministic
            loading transforms), each with ``patient_key``. Which patient each item belongs to is read from the
            sequence's ``data`` attribute when it has one (a MONAI dataset's list of entries, so no item is
            loaded for it), else from the items. The drawn item is returned as a new dict; transforms after this
            one must not modify its arrays in place.
        patient_key: the key holding the patient of a slot and of a slice.

    Raises:
        ValueError: no slice, or a slot of a patient that has none.
    """

    def __init__(self, slices: Sequence[Mapping], patient_key: str = "patient_index"):
        if len(slices) == 0:
            raise ValueError("PickPatientSliced needs at least one slice")
        entries = getattr(slices, "data", slices)
        self.slices = slices
        self.patient_key = patient_key
        self.members: dict[Hashable, list[int]] = {}
        for i, entry in enumerate(entries):
            self.members.setdefault(entry[patient_key], []).append(i)
        self._choice = 0

    def randomize(self, data: int = 1) -> None:
        """Draw the position of the slice among the ``data`` slices of the slot's patient."""
        self._choice = int(self.R.randint(int(data)))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        patient = data[self.patient_key]
        patient = int(patient) if not isinstance(patient, str) else patient
        members = self.members.get(patient)
        if not members:
            raise ValueError(f"no slice of patient {patient!r} to fill the slot")
        self.randomize(len(members))
        return dict(self.slices[members[self._choice]])
