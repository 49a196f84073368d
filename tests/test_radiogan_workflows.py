"""RadioGAN preparation, training from train.json, inference and evaluation on a tiny PET DICOM cohort."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser

from bundles.errors import BundleInputError
from bundles.phantoms.pet import write_pet_cohort
from bundles.workflows.radiogan_prepare import ensure_prepared

CONFIGS = Path(__file__).resolve().parents[1] / "radiogan_bundle" / "configs"
SHAPE = (12, 8, 40)  # 48.7 x 32.5 x 80 mm -> a 23 x 40 coronal MIP at 2 mm
SIZE = [24, 40]  # first_grid (3, 5) * 2**3
TINY = {"first_grid": [3, 5], "g_channels": [8, 4, 4], "image_size": SIZE}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Ten studies (two per class) as PET DICOM with labels.csv (about 6 s to write: slow tests only)."""
    return write_pet_cohort(tmp_path_factory.mktemp("pet") / "raw", subjects=10, seed=3, shape=SHAPE)


@pytest.fixture(scope="module")
def one_study(tmp_path_factory):
    """A single labelled study, for the quick bad-input checks."""
    return write_pet_cohort(tmp_path_factory.mktemp("pet1") / "raw", subjects=1, seed=5, shape=SHAPE)


def prepare(raw_dir, dataset_dir, **overrides):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "prepare.json"))
    settings = {"raw_dir": str(raw_dir), "dataset_dir": str(dataset_dir), "image_size": SIZE,
                "heldout_per_class": 1, **overrides}
    for key, value in settings.items():
        parser[key] = value
    try:
        return parser.get_parsed_content("preparation")
    except RuntimeError as err:  # MONAI wraps errors raised inside config expressions
        if isinstance(err.__cause__, BundleInputError):
            raise err.__cause__ from None
        raise


@pytest.mark.slow
def test_prepare_writes_fixed_size_mips_png_and_a_stratified_datalist(cohort, tmp_path):
    out = tmp_path / "prepared"
    datalist = prepare(cohort, out)
    assert len(datalist["training"]) == 5 and len(datalist["validation"]) == 5
    assert sorted(it["label"] for it in datalist["validation"]) == [0, 1, 2, 3, 4]
    assert json.loads((out / "datalist.json").read_text()) == datalist
    assert not list(tmp_path.glob("*.partial"))
    item = datalist["training"][0]
    img = nib.load(item["image"])
    data = np.asarray(img.dataobj)
    assert data.shape == tuple(SIZE) and data.dtype == np.float32
    assert 0.0 <= data.min() and 0.0 < data.max() <= 1.0
    # 2 mm pixels along R (axis 0, to the patient's left) and S (axis 1); padding is zeros at the border
    np.testing.assert_allclose(np.abs(img.affine[[0, 2], [0, 1]]), [2.0, 2.0])
    assert img.affine[2, 1] > 0 and (np.all(data[0] == 0) or np.all(data[-1] == 0))  # 23 -> 24 columns
    assert Path(item["png"]).stat().st_size > 100
    # the truth SUV of the same patient, projected by hand, matches the stored MIP where the body is
    truth = np.asarray(nib.load(cohort / "truth" / f"{item['patient_id']}_suv.nii.gz").dataobj)
    assert abs(float(data.max()) - min(float(truth.max()), 30.0) / 30.0) < 0.02


def test_a_mip_larger_than_the_fixed_size_is_refused_unless_cropping(one_study, tmp_path):
    with pytest.raises(BundleInputError, match="never stretched") as err:
        prepare(one_study, tmp_path / "a", image_size=[16, 40])
    assert err.value.field == "image_size" and "PET-" in str(err.value.path)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()
    datalist = prepare(one_study, tmp_path / "b", image_size=[16, 40], crop=True)
    assert np.asarray(nib.load(datalist["training"][0]["image"]).dataobj).shape == (16, 40)


def test_bad_inputs_name_the_problem(one_study, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleInputError, match="empty"):
        prepare(empty, tmp_path / "p1")
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,label\nPET-001,melanoma\n")
    with pytest.raises(BundleInputError, match="melanoma") as err:
        prepare(one_study, tmp_path / "p2", labels_csv=str(labels))
    assert err.value.field == "label"
    # a study without PatientWeight: SUV cannot be computed, the tag is named
    raw = tmp_path / "raw"
    shutil.copytree(one_study, raw, ignore=shutil.ignore_patterns("truth"))
    for f in sorted(raw.glob("PET-001/*/*/*.dcm")):
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f)
    with pytest.raises(BundleInputError, match="PatientWeight"):
        prepare(raw, tmp_path / "p3")


@pytest.mark.slow
def test_train_json_runs_preparation_then_two_iterations_then_inference_and_evaluation(cohort, tmp_path):
    common = {"bundle_root": str(CONFIGS.parent), "raw_dir": str(cohort), "dataset_dir": str(tmp_path / "prepared"),
              "output_dir": str(tmp_path / "out"), **TINY}
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    for key, value in {**common, "d_channels": [4] * 8, "train#dataloader#batch_size": 2,
                       "train#trainer#max_epochs": 1}.items():
        parser[key] = value
    parser.get_parsed_content("training")  # prepares the dataset first (2 per class: 1 held out), then trains
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2  # 5 training MIPs, batches of 2, last partial batch dropped
    assert {"d_total", "g_total", "d_acc"} <= set(trainer.state.output[0]["loss"])
    assert (tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt").exists()
    assert (tmp_path / "prepared" / "datalist.json").exists()

    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.json"))
    for key, value in {**common, "num_per_class": 2, "classes": ["lung", 4]}.items():
        if key not in ("raw_dir", "dataset_dir", "image_size"):
            inference[key] = value
    manifest = inference.get_parsed_content("inference")
    assert [m["class_name"] for m in manifest] == ["lung", "lung", "lymphoma", "lymphoma"]
    img = nib.load(manifest[0]["image"])
    suv = np.asarray(img.dataobj)
    assert suv.shape == tuple(SIZE) and 0.0 <= suv.min() and suv.max() <= 30.0
    np.testing.assert_allclose(np.abs(img.affine[[0, 2], [0, 1]]), [2.0, 2.0])
    generator = inference.get_parsed_content("network")
    with torch.no_grad():
        again = generator(torch.randn(1, 100), torch.tensor([3]))
    assert again.shape == (1, 1, *SIZE)

    evaluation = ConfigParser()
    evaluation.read_config(str(CONFIGS / "evaluate.json"))
    for key, value in {**common, "num_per_class": 3, "classifier_epochs": 1, "walk_steps": 4,
                       "class_pairs": [["lung", "lymphoma"]]}.items():
        evaluation[key] = value
    metrics = evaluation.get_parsed_content("evaluation")
    out = tmp_path / "out" / "evaluation"
    assert json.loads((out / "metrics.json").read_text())["num_generated"] == 15
    assert set(metrics["conditional_accuracy"]["per_class"]) == {"normal", "head_neck", "oesophagus", "lung",
                                                                  "lymphoma"}
    assert metrics["memorisation_pixel"]["ratio"] > 0 and len(metrics["walks"]["axis_lung"]["ssim"]) == 3
    for png in ("walk_axis.png", "walk_lung_to_lymphoma.png", "closest_pixel.png", "closest_features.png"):
        assert (out / png).stat().st_size > 1000


def test_ensure_prepared_returns_an_existing_datalist_without_preparing(tmp_path):
    dataset = tmp_path / "prepared"
    dataset.mkdir()
    datalist = {"training": [{"image": "x", "label": 0}], "validation": [], "classes": ["a"], "image_size": [8, 8]}
    (dataset / "datalist.json").write_text(json.dumps(datalist))
    assert ensure_prepared(CONFIGS / "prepare.json", dataset_dir=str(dataset), raw_dir=str(tmp_path / "none")) == datalist
    assert not (tmp_path / "none").exists()
