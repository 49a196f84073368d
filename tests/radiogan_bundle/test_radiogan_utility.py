"""RadioGAN's utility study: class-balanced nested subsets, a fixed GAN and classifier budget, and the command at
toy size (four arms per seed, refused sizes before anything is written)."""

import json

import numpy as np
import pytest
import torch
from bundle_cases import CASE_BY_NAME, prepare_case, run_workflow, user_error
from scripts.classifier import _batches, train_classifier
from scripts.utility import gan_overrides, study_splits

from gan_core.errors import BundleInputError
from gan_core.evaluation.utility import ARMS, arm_data, select_per_class
from gan_core.figures import plt

RADIOGAN = CASE_BY_NAME["radiogan"]


def test_subsets_per_class_are_balanced_nested_and_leave_a_test_set():
    labels = [c for c in range(5) for _ in range(6)]  # six items per class
    small, large = select_per_class(labels, 2, seed=3), select_per_class(labels, 4, seed=3)
    assert [sum(labels[i] == c for i in small) for c in range(5)] == [2] * 5
    assert set(small) <= set(large) and select_per_class(labels, 2, seed=3) == small
    assert select_per_class(labels, 2, seed=4) != small
    subsets, rest = study_splits(labels, [2, 4], seed=3)
    assert subsets[4] == large and sorted(rest) == sorted(set(range(30)) - set(large)) and len(rest) == 10
    with pytest.raises(BundleInputError, match="too few"):
        select_per_class(labels, 6, seed=0)  # no image of the class would be left to test on


def test_arms_train_the_same_number_of_steps_whatever_their_data():
    real = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    synthetic = (torch.ones(400, 1), torch.ones(400, dtype=torch.long))
    gen = torch.Generator().manual_seed(0)
    counts = {}
    for arm in ARMS:
        x, y, weights = arm_data(arm, real, synthetic, synthetic_share=0.25)
        batches = list(_batches(x.shape[0], 16, epochs=99, steps=50, weights=weights, gen=gen))
        counts[arm] = len(batches)
        if arm == "real+synthetic":
            assert float(weights[:4].sum()) == pytest.approx(0.75) and float(weights[4:].sum()) == pytest.approx(0.25)
            share = np.mean([float(y[b].float().mean()) for b in batches])
            assert share == pytest.approx(0.25, abs=0.05)  # a quarter of every batch is synthetic on average
    assert set(counts.values()) == {50}


def test_gan_budget_is_the_same_at_every_size():
    items = [{"image": f"/x/{i}.nii.gz", "label": i % 5} for i in range(20)]
    small, large = (gan_overrides(items[:n], iterations=1500, batch_size=10, seed=1) for n in (10, 20))
    for o in (small, large):
        assert o["train#trainer#epoch_length"] * o["train#trainer#max_epochs"] == 1500
        assert o["sample_every_n_epochs"] == o["train#trainer#max_epochs"]
    assert len(small["train#dataset#data"]) == 10 and small["train#dataloader#batch_size"] == 10


def test_classifier_steps_mode_trains_and_epochs_mode_is_unchanged():
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    a = train_classifier(x, y, num_classes=2, width=2, epochs=2, batch_size=4, seed=0)
    b = train_classifier(x, y, num_classes=2, width=2, epochs=2, batch_size=4, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = train_classifier(x, y, num_classes=2, width=2, steps=3, batch_size=4, seed=0)
    assert not torch.equal(a.head.weight, c.head.weight)


@pytest.mark.slow
def test_radiogan_utility_command_at_toy_size(tmp_path):
    raw = RADIOGAN.make_raw(tmp_path / "raw")
    prepare_case(RADIOGAN, raw, tmp_path / "prepared", heldout_per_class=0)  # two studies per class to split
    gan = {k: v for k, v in RADIOGAN.toy["training"].items()
           if k not in ("train#dataloader#batch_size", "train#trainer#max_epochs")}
    run_workflow(RADIOGAN, "utility", "utility.json", dataset_dir=str(tmp_path / "prepared"),
                 output_dir=str(tmp_path / "out"), sizes_per_class=[1], seeds=[0, 1], gan_iterations=2,
                 gan_batch_size=2, gan_settings=gan, synthetic_per_class=2, classifier_steps=2,
                 classifier_batch_size=4, classifier_width=2)
    out = tmp_path / "out" / "utility"
    result = json.loads((out / "utility.json").read_text())
    assert {(r["seed"], r["arm"]) for r in result["runs"]} == {(s, a) for s in (0, 1) for a in ARMS}
    assert {r["steps"] for r in result["runs"]} == {2} and {r["test"] for r in result["runs"]} == {5}
    assert [r["train_real"] for r in result["runs"][:3]] == [5, 5, 0]
    assert set(result["summary"]["1"]) >= {"real", "real+synthetic", "synthetic", "gain", "tstr_ratio"}
    for gan_run in result["gans"]:
        state = torch.load(out / gan_run["checkpoint"], weights_only=True)
        assert state["trainer"]["iteration"] == 2  # the fixed budget
    assert plt.imread(out / "utility.png").ndim == 3 and (out / "run_info.json").is_file()
    snapshot = out / result["design"]["gan"]["train_config"]  # the train.json every GAN of the study read
    assert snapshot == out / "configs" / "train.json"
    assert snapshot.read_bytes() == (RADIOGAN.root / "configs" / "train.json").read_bytes()
    error = user_error(run_workflow, RADIOGAN, "utility", "utility.json", dataset_dir=str(tmp_path / "prepared"),
                       output_dir=str(tmp_path / "out2"), sizes_per_class=[2])
    assert error.field == "sizes_per_class"  # two studies per class leave none to test on
    assert not (tmp_path / "out2").exists()  # refused before anything is written
