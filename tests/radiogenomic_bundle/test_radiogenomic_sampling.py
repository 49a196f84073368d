"""Patient-balanced sampling, the training items' appearance targets and size quantiles, and the slice noise."""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import norm
from scripts.prepare import training_items
from scripts.sampling import PickPatientSliced, patient_slots
from scripts.trainer import RadiogenomicTrainer, check_training_settings

from gan_core.errors import BundleInputError


def _items():
    # patient 0 has six slices, patient 1 two, patient 2 one
    return [{"patient_index": p, "image": f"p{p}_s{k}"} for p, n in ((0, 6), (1, 2), (2, 1)) for k in range(n)]


def test_patient_slots_give_every_patient_the_same_weight():
    slots = patient_slots(_items())
    assert Counter(s["patient_index"] for s in slots) == {0: 3, 1: 3, 2: 3}  # round(9 / 3) = 3 each
    assert len(patient_slots(_items(), slots_per_patient=5)) == 15
    with pytest.raises(ValueError, match="at least 1"):
        patient_slots(_items(), slots_per_patient=0)


def test_pick_patient_slice_draws_uniformly_among_that_patients_slices_reproducibly():
    pick = PickPatientSliced(_items()).set_random_state(seed=0)
    drawn = [pick({"patient_index": 0})["image"] for _ in range(600)]
    counts = Counter(drawn)
    assert set(counts) == {f"p0_s{k}" for k in range(6)} and min(counts.values()) > 60  # 100 expected each
    assert {pick({"patient_index": 2})["image"] for _ in range(20)} == {"p2_s0"}
    again = PickPatientSliced(_items()).set_random_state(seed=0)
    assert [again({"patient_index": 0})["image"] for _ in range(600)] == drawn
    item = pick({"patient_index": torch.tensor(1)})
    assert item["image"] in {"p1_s0", "p1_s1"} and item is not _items()[6]  # a new dict
    with pytest.raises(ValueError, match="no slice of patient 7"):
        pick({"patient_index": 7})


def _descriptors(diameter, mean_hu):
    return {"diameter_mm": diameter, "mean_hu": mean_hu, "boundary_gradient": 100.0, "compactness": 1.0,
            "solidity": 1.0, "hu_p90": mean_hu + 50.0, "hu_spread": 50.0}


def test_training_items_hold_standardised_patient_appearance_and_size_quantiles():
    entries = [
        {"patient_id": "B", "image": "b0", "mask": "m", "genes": "gb", "descriptors": _descriptors(10.0, -100.0)},
        {"patient_id": "A", "image": "a0", "mask": "m", "genes": "ga", "descriptors": _descriptors(20.0, -500.0)},
        {"patient_id": "A", "image": "a1", "mask": "m", "genes": "ga", "descriptors": _descriptors(10.0, -500.0)},
        {"patient_id": "B", "image": "b1", "mask": "m", "genes": "gb", "descriptors": _descriptors(30.0, -100.0)},
    ]
    items = training_items({"training": entries})
    assert [it["patient_index"] for it in items] == [1, 0, 0, 1]  # sorted patient IDs: A = 0, B = 1
    # diameters 10, 20, 10, 30: mean 17.5, sd sqrt(68.75); patient A's mean 15, B's 20
    sd = np.sqrt(68.75)
    assert items[1]["appearance"][0] == pytest.approx((15.0 - 17.5) / sd)
    assert items[0]["appearance"][0] == pytest.approx((20.0 - 17.5) / sd)
    assert items[1]["appearance"][1] == pytest.approx(-1.0) and items[0]["appearance"][1] == pytest.approx(1.0)
    assert items[1]["appearance"][2] == 0.0  # a constant descriptor stays 0
    # within patient A, slice a1 (10 mm) is the smaller: quantile [0, 0.5]; a0 [0.5, 1]
    assert items[2]["slice_quantile"] == [0.0, 0.5] and items[1]["slice_quantile"] == [0.5, 1.0]
    assert items[0]["slice_quantile"] == [0.0, 0.5] and items[3]["slice_quantile"] == [0.5, 1.0]


class _Generator(torch.nn.Module):
    noise_dim = 3


def test_slice_noise_ties_the_first_coordinate_to_the_slice_quantile():
    trainer = RadiogenomicTrainer.__new__(RadiogenomicTrainer)
    trainer.generator, trainer.slice_noise = _Generator(), True
    batch = {"background": torch.zeros(3, 1, 4, 4),
             "slice_quantile": torch.tensor([[0.5, 0.5], [0.975, 0.975], [0.0, 0.25]])}
    torch.manual_seed(0)
    noise = trainer.noise(batch)
    assert noise.shape == (3, 3)
    assert noise[0, 0].item() == pytest.approx(0.0, abs=1e-6) and noise[1, 0].item() == pytest.approx(1.95996, abs=1e-4)
    assert noise[2, 0].item() <= norm.ppf(0.25) + 1e-6
    trainer.slice_noise = False
    torch.manual_seed(0)
    plain = trainer.noise(batch)
    torch.manual_seed(0)
    torch.testing.assert_close(plain, torch.randn(3, 3))


def test_training_settings_are_checked():
    check_training_settings({"objective": "paper", "network#fusion": "mask", "network#code_gradient": 0.5,
                             "d_gene_encoder": "false", "slice_noise": True, "slots_per_patient": None})
    for bad in ({"objective": "gan"}, {"network#fusion": "pixels"}, {"network#code_gradient": 2},
                {"slots_per_patient": 0}, {"slice_noise": "maybe"}):
        with pytest.raises(BundleInputError):
            check_training_settings(bad)
