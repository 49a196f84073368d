"""Utility studies: their statistics on inputs with known answers, and a 1-2 iteration run of each command."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_cases import CTSTYLE, RADIOGAN, prepare_case, run_workflow, user_error

from bundles.errors import BundleInputError
from bundles.evaluation.classifier import _batches, train_classifier
from bundles.evaluation.utility import (
    ARMS,
    NULL_ARM,
    arm_data,
    check_sizes_fit,
    check_study_settings,
    check_targets,
    paired_interval,
    patient_splits,
    read_utility_result,
    save_utility_figure,
    segment,
    select_patients,
    select_per_class,
    snapshot_configs,
    summarise_runs,
    t_interval,
    train_segmenter,
    write_utility_result,
)
from bundles.figures import plt
from bundles.workflows.ctstyle_utility import organ_dice
from bundles.workflows.radiogan_utility import gan_overrides, study_splits

T_975_2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom


def runs_of(values: dict) -> list[dict]:
    """{(size, arm): [per-seed values]} -> run records."""
    return [{"size": size, "seed": s, "arm": arm, "value": v}
            for (size, arm), vs in values.items() for s, v in enumerate(vs)]


# ------------------------------------------------------------------------------------------------ statistics
def test_t_interval_known_answer():
    out = t_interval([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0 and out["sd"] == 1.0 and out["n"] == 3
    half = T_975_2 / math.sqrt(3)
    assert out["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert t_interval([0.7])["ci95"] is None and t_interval([0.7])["mean"] == 0.7
    assert t_interval([1.0, float("nan"), 3.0])["n"] == 2  # a failed seed is left out, not counted as 0


def test_paired_gain_cancels_what_seeds_share():
    real = [0.50, 0.70, 0.60]  # seeds differ a lot ...
    more = [0.60, 0.80, 0.70]  # ... but every seed gains exactly 0.1
    gain = paired_interval(real, more)
    assert gain["mean"] == pytest.approx(0.1) and gain["ci95"] == pytest.approx([0.1, 0.1])
    unpaired = t_interval(more)["ci95"][0] - t_interval(real)["ci95"][1]
    assert unpaired < 0  # the unpaired intervals overlap: only pairing shows the gain
    ratio = paired_interval([0.5, 0.8], [0.4, 0.8], how="ratio")
    assert ratio["mean"] == pytest.approx(0.9) and ratio["values"] == pytest.approx([0.8, 1.0])


def test_summary_and_targets_known_answer():
    runs = runs_of({(2, "real"): [0.60, 0.62, 0.58], (2, "real+synthetic"): [0.70, 0.73, 0.69],
                    (2, "synthetic"): [0.50, 0.50, 0.50],
                    (8, "real"): [0.90, 0.91, 0.92], (8, "real+synthetic"): [0.90, 0.92, 0.91],
                    (8, "synthetic"): [0.60, 0.60, 0.60]})
    summary = summarise_runs(runs, [2, 8], [0, 1, 2])
    assert summary["2"]["real"]["mean"] == pytest.approx(0.60)
    assert summary["2"]["gain"]["mean"] == pytest.approx(0.1067, abs=1e-4)
    assert summary["2"]["gain"]["ci95"][0] > 0
    assert summary["2"]["tstr_ratio"]["mean"] == pytest.approx(np.mean([0.5 / 0.6, 0.5 / 0.62, 0.5 / 0.58]))
    passed = check_targets(summary)
    # size 2: real below 0.85 and gain 0.107 with a positive interval; size 8: real above 0.85
    assert passed["gain"] and passed["gain_sizes"] == ["2"] and passed["sizes_with_real_below"] == ["2"]
    assert not passed["tstr"]  # 0.6 / 0.91 < 0.8 at size 8
    runs[5]["value"] = 0.30  # one seed of size 2 loses with synthetic data: the interval now reaches below 0
    assert not check_targets(summarise_runs(runs, [2, 8], [0, 1, 2]))["gain"]


def test_null_arm_summary_known_answer():
    runs = runs_of({(0, "real"): [0.80, 0.78, 0.82], (0, "real+synthetic"): [0.72, 0.70, 0.75],
                    (0, "synthetic"): [0.60, 0.60, 0.60], (0, NULL_ARM): [0.84, 0.80, 0.88]})
    entry = summarise_runs(runs, [0], [0, 1, 2])["0"]
    assert entry[NULL_ARM]["mean"] == pytest.approx(0.84)
    assert entry["gain_null"]["values"] == pytest.approx([0.04, 0.02, 0.06])  # null - real, paired per seed
    assert entry["gain_over_null"]["values"] == pytest.approx([-0.12, -0.10, -0.13])  # GAN - null, paired
    assert entry["gain_over_null"]["ci95"][1] < 0  # the GAN's data teach less than the null's on every seed
    assert entry["gain"]["mean"] == pytest.approx(-0.0767, abs=1e-4)  # the gain itself is unchanged by the null
    without = summarise_runs([r for r in runs if r["arm"] != NULL_ARM], [0], [0, 1, 2])["0"]
    assert not {NULL_ARM, "gain_null", "gain_over_null"} & set(without)  # a study without a null has none


def test_null_arm_mixes_like_the_synthetic_arm_and_needs_its_set():
    real = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    synthetic = (torch.ones(40, 1), torch.ones(40, dtype=torch.long))
    null = (torch.full((40, 1), 2.0), torch.full((40,), 2, dtype=torch.long))
    x, y, w = arm_data(NULL_ARM, real, synthetic, 0.25, null)
    xs, ys, ws = arm_data("real+synthetic", real, synthetic, 0.25)
    assert torch.equal(w, ws) and torch.equal(x[:4], xs[:4]) and set(y[4:].tolist()) == {2}
    with pytest.raises(ValueError, match="null set"):
        arm_data(NULL_ARM, real, synthetic, 0.25)


def test_utility_result_round_trip_and_figure_shows_the_three_arms(tmp_path):
    runs = runs_of({(1, "real"): [0.5, 0.6], (1, "real+synthetic"): [0.6, 0.7], (1, "synthetic"): [0.4, 0.5],
                    (3, "real"): [0.7, 0.8], (3, "real+synthetic"): [0.8, 0.8], (3, "synthetic"): [0.6, 0.6]})
    summary = summarise_runs(runs, [1, 3], [0, 1])
    result = {"sizes": [1, 3], "seeds": [0, 1], "summary": summary, "passed": check_targets(summary),
              "measure": "accuracy", "size_unit": "studies per class", "nan": float("nan")}
    write_utility_result(tmp_path, result)
    back = read_utility_result(tmp_path)
    assert back["summary"]["1"]["gain"]["mean"] == pytest.approx(0.1) and back["nan"] is None
    assert read_utility_result(tmp_path / "missing") is None
    image = plt.imread(save_utility_figure(back, tmp_path / "utility.png"))[..., :3]
    for colour in ("tab:blue", "tab:orange", "tab:green"):  # one line per arm is drawn
        rgb = np.array(plt.matplotlib.colors.to_rgb(colour))
        assert (np.abs(image - rgb).max(axis=-1) < 0.02).sum() > 30, colour
    purple = np.array(plt.matplotlib.colors.to_rgb("tab:purple"))
    assert (np.abs(image - purple).max(axis=-1) < 0.02).sum() < 5  # no null arm, no purple line
    runs += runs_of({(1, NULL_ARM): [0.55, 0.65], (3, NULL_ARM): [0.75, 0.8]})
    with_null = {**result, "summary": summarise_runs(runs, [1, 3], [0, 1])}
    image = plt.imread(save_utility_figure(with_null, tmp_path / "with_null.png"))[..., :3]
    assert (np.abs(image - purple).max(axis=-1) < 0.02).sum() > 30  # the null arm's line


def test_study_settings_are_checked_before_work():
    check_study_settings({"sizes_per_class": [2, 4], "seeds": [0, 1, 2], "gan_iterations": 10,
                          "synthetic_share": 0.5, "perturb_magnitude_px": 3.0, "seg_features": [8, 8, 8, 8, 8, 8]})
    for bad in ({"sizes": [4, 2]}, {"seeds": [0]}, {"seeds": [1, 1]}, {"gan_iterations": 0},
                {"synthetic_share": 1.0}, {"perturb_magnitude_px": -1.0}, {"seg_features": [8, 8]}):
        with pytest.raises(BundleInputError) as caught:
            check_study_settings(bad)
        assert caught.value.field == next(iter(bad)) and caught.value.hint
    with pytest.raises(BundleInputError, match=">= 1"):  # no real data: only ctstyle's style slice makes a size 0
        check_study_settings({"sizes": [0, 1]})
    check_study_settings({"sizes": [0, 1]}, smallest_size=0)


# ---------------------------------------------------------------------------------------- subsets and arms
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


def test_patient_subsets_are_nested():
    patients = [f"P{i}" for i in range(10)]
    one, three = select_patients(patients, 1, seed=0), select_patients(patients, 3, seed=0)
    assert len(one) == 1 and len(three) == 3 and set(one) <= set(three)
    with pytest.raises(BundleInputError):
        select_patients(patients[:3], 3, seed=0)
    check_sizes_fit(patients[:4] * 2, [1, 3])  # slices of four patients: one is left to test on
    with pytest.raises(BundleInputError, match="4 training patients, too few for subsets of 4") as caught:
        check_sizes_fit(patients[:4] * 2, [1, 4])
    assert caught.value.field == "sizes"


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


def test_organ_dice_known_answer_and_segmenter_steps():
    ref = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    ref[..., :4, :] = 1  # body: 32 px
    pred = ref.clone()
    pred[..., :2, :] = 2  # half the body called lungs
    dice = organ_dice(pred, ref)
    assert dice["body"] == pytest.approx(2 * 16 / (16 + 32)) and dice["lungs"] == 0.0
    assert dice["bone"] is None and "air" not in dice
    images, labels = torch.rand(3, 1, 32, 32) * 2 - 1, torch.randint(0, 6, (3, 1, 32, 32))
    nets = [train_segmenter(images, labels, num_classes=6, steps=2, batch_size=2, features=(2, 2, 2, 2, 2, 2),
                            flips=True, seed=4) for _ in range(2)]
    assert not nets[0].training and nets[0](torch.zeros(1, 1, 32, 32)).shape == (1, 6, 32, 32)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)  # one seed, one training: the arms differ only by their data
    predicted = segment(nets[0], images, batch_size=2)
    assert predicted.shape == (3, 1, 32, 32) and predicted.dtype == torch.int64 and int(predicted.max()) < 6


def test_patient_splits_are_nested_and_leave_the_rest_for_testing():
    patients = [f"P{i}" for i in range(6) for _ in range(2)]  # two slices each
    subsets, rest = patient_splits(patients, [1, 3], seed=5)
    assert set(subsets[1]) < set(subsets[3]) and len(subsets[3]) == 3
    assert rest == sorted(set(patients) - set(subsets[3]))
    assert patient_splits(patients, [1, 3], seed=5) == (subsets, rest)


def test_snapshot_configs_copies_each_config_with_its_companions(tmp_path):
    configs = tmp_path / "bundle" / "configs"
    configs.mkdir(parents=True)
    (configs / "train.json").write_text('{"lr": 1}')
    (configs / "prepare.json").write_text('{"size": 2}')
    (configs / "metadata.json").write_text("{}")
    work = tmp_path / "work"
    work.mkdir()
    copies = snapshot_configs(work, configs / "train.json", configs / "prepare.json")
    assert copies == [work / "configs" / "train.json", work / "configs" / "prepare.json"]
    (configs / "train.json").write_text('{"lr": 2}')  # an edit after the start does not reach the study
    assert copies[0].read_text() == '{"lr": 1}' and (work / "configs" / "metadata.json").is_file()
    with pytest.raises(BundleInputError, match="no such config file"):
        snapshot_configs(work, configs / "evaluate.json")


# ------------------------------------------------------------------------------------------ the commands
@pytest.mark.slow
def test_radiogan_utility_command_at_toy_size(tmp_path):
    raw = RADIOGAN.make_raw(tmp_path / "raw")
    prepare_case(RADIOGAN, raw, tmp_path / "prepared", heldout_per_class=0)  # two studies per class to split
    gan = {k: v for k, v in RADIOGAN.train.items() if k != "train#dataloader#batch_size"}
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


@pytest.mark.slow
def test_ctstyle_utility_command_at_toy_size(tmp_path):
    from bundles.phantoms.ctseg import write_ctseg_cohort

    raw = write_ctseg_cohort(tmp_path / "raw", subjects=4, slices_per_subject=2, size=64, seed=1)
    prepare_case(CTSTYLE, raw, tmp_path / "prepared", image_size=64)
    gan = {k: v for k, v in CTSTYLE.train.items() if k != "loss_size"} | {"loss_size": None}
    run_workflow(CTSTYLE, "utility", "utility.json", dataset_dir=str(tmp_path / "prepared"),
                 output_dir=str(tmp_path / "out"), image_size=32, sizes=[0, 1], seeds=[0, 1], gan_iterations=2,
                 gan_settings=gan, synthetic_per_map=2, perturb_magnitude_px=1.0, perturb_smoothness_px=4.0,
                 seg_steps=2, seg_batch_size=2, seg_features=[2, 2, 2, 2, 2, 2])
    out = tmp_path / "out" / "utility"
    result = json.loads((out / "utility.json").read_text())
    prepared = json.loads((out / "prepared" / "datalist.json").read_text())
    assert prepared["image_size"] == 32 and prepared["style"]["patient_id"] == "CT-004"  # the same split, smaller
    assert {(r["size"], r["seed"], r["arm"]) for r in result["runs"]} == {(k, s, a) for k in (0, 1) for s in (0, 1)
                                                                          for a in (*ARMS, NULL_ARM)}
    # size 0: the style slice alone; size 1: one training patient (2 slices) + the style slice; 2 synthetic pairs
    # per map, and as many painted ones in the null arm; 1 training + 1 evaluation patient (4 slices) to test on
    assert [(r["train_real"], r["train_synthetic"]) for r in result["runs"][:8]] == [
        (1, 0), (1, 2), (0, 2), (1, 2), (3, 0), (3, 6), (0, 6), (3, 6)]
    assert set(result["summary"]["0"]) >= {NULL_ARM, "gain_null", "gain_over_null"}
    assert {r["test"] for r in result["runs"]} == {4}
    assert set(result["runs"][0]["per_organ"]) == {"body", "lungs", "heart_vessels", "bone", "spinal_cord"}
    style_slice = Path(prepared["style"]["image"]).name
    for gan_run in result["gans"]:
        assert torch.load(out / gan_run["checkpoint"], weights_only=True)["trainer"]["iteration"] == 2
        # each GAN learnt from its subset's slices; at size 0 from the style slice, its one real pair
        assert len(gan_run["content_slices"]) == (1 if gan_run["size"] == 0 else 2)
        assert (gan_run["content_slices"] == [style_slice]) == (gan_run["size"] == 0)
    assert plt.imread(out / "utility.png").ndim == 3
    assert {f.name for f in (out / "configs").iterdir()} == {"train.json", "prepare.json", "metadata.json", "logging.conf"}
    # sizes the dataset cannot hold are refused before the study prepares or writes anything (not even its lock)
    error = user_error(run_workflow, CTSTYLE, "utility", "utility.json", dataset_dir=str(tmp_path / "prepared"),
                       output_dir=str(tmp_path / "out2"), image_size=32, sizes=[0, 3])
    assert error.field == "sizes" and not (tmp_path / "out2").exists()
