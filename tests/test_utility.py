"""Utility studies: their statistics on inputs with known answers, and a 1-2 iteration run of each command."""

import math

import numpy as np
import pytest
import torch

from gan_core.errors import BundleInputError
from gan_core.evaluation.utility import (
    NULL_ARM,
    arm_data,
    check_sizes_fit,
    check_study_settings,
    check_targets,
    paired_interval,
    patient_splits,
    read_utility_result,
    save_utility_figure,
    select_patients,
    snapshot_bundle,
    summarise_runs,
    t_interval,
    write_utility_result,
)
from gan_core.figures import plt

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


def test_patient_splits_are_nested_and_leave_the_rest_for_testing():
    patients = [f"P{i}" for i in range(6) for _ in range(2)]  # two slices each
    subsets, rest = patient_splits(patients, [1, 3], seed=5)
    assert set(subsets[1]) < set(subsets[3]) and len(subsets[3]) == 3
    assert rest == sorted(set(patients) - set(subsets[3]))
    assert patient_splits(patients, [1, 3], seed=5) == (subsets, rest)


def test_snapshot_bundle_copies_each_config_with_its_companions_and_the_code(tmp_path):
    configs = tmp_path / "bundle" / "configs"
    configs.mkdir(parents=True)
    (tmp_path / "bundle" / "scripts" / "__pycache__").mkdir(parents=True)
    (tmp_path / "bundle" / "scripts" / "networks.py").write_text("X = 1\n")
    (configs / "train.json").write_text('{"lr": 1}')
    (configs / "prepare.json").write_text('{"size": 2}')
    (configs / "metadata.json").write_text("{}")
    work = tmp_path / "work"
    work.mkdir()
    copies = snapshot_bundle(work, configs / "train.json", configs / "prepare.json")
    assert copies == [work / "configs" / "train.json", work / "configs" / "prepare.json"]
    (configs / "train.json").write_text('{"lr": 2}')  # an edit after the start does not reach the study
    (tmp_path / "bundle" / "scripts" / "networks.py").write_text("X = 2\n")
    assert copies[0].read_text() == '{"lr": 1}' and (work / "configs" / "metadata.json").is_file()
    assert (work / "scripts" / "networks.py").read_text() == "X = 1\n" and not (work / "scripts" / "__pycache__").exists()
    with pytest.raises(BundleInputError, match="no such config file"):
        snapshot_bundle(work, configs / "evaluate.json")
