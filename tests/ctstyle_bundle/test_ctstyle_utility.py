"""ctstyle's utility study: organ Dice, seeded segmenters, and the command at toy size (the arms, the null arm,
the GANs' subsets, refused sizes before anything is written)."""

import json
from pathlib import Path

import pytest
import torch
from bundle_cases import CASE_BY_NAME, prepare_case, run_workflow, user_error
from scripts.utility import organ_dice

from gan_core.evaluation.utility import ARMS, NULL_ARM, segment, train_segmenter
from gan_core.figures import plt

CTSTYLE = CASE_BY_NAME["ctstyle"]


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


@pytest.mark.slow
def test_ctstyle_utility_command_at_toy_size(tmp_path):
    from scripts.demo_cohort import write_demo_cohort

    raw = write_demo_cohort(tmp_path / "raw", subjects=4, slices_per_subject=2, size=64, seed=1)
    prepare_case(CTSTYLE, raw, tmp_path / "prepared", image_size=64)
    gan = {k: v for k, v in CTSTYLE.toy["training"].items() if k not in ("loss_size", "train#trainer#max_epochs")} | {"loss_size": None}
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
