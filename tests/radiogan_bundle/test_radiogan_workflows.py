"""RadioGAN preparation, training from train.json, export, inference and evaluation on a tiny PET DICOM cohort."""

import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_cases import CASE_BY_NAME, REPO, prepare_case, run_workflow, user_error
from scripts.demo_cohort import write_demo_cohort

from gan_core.evaluation.metrics import RESULT_KEYS
from gan_core.evaluation.utility import check_targets, summarise_runs, write_utility_result
from gan_core.export import export_model
from gan_core.models import read_model

RADIOGAN = CASE_BY_NAME["radiogan"]

SHAPE = (12, 8, 40)  # 48.7 x 32.5 x 80 mm -> a 23 x 40 coronal MIP at 2 mm
SIZE = [24, 40]  # first_grid (3, 5) * 2**3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Ten studies (two per class) as PET DICOM with labels.csv (about 6 s to write: slow tests only)."""
    return write_demo_cohort(tmp_path_factory.mktemp("pet") / "raw", subjects=10, seed=3, shape=SHAPE)


@pytest.fixture(scope="module")
def one_study(tmp_path_factory):
    """A single labelled study, for the quick bad-input checks."""
    return write_demo_cohort(tmp_path_factory.mktemp("pet1") / "raw", subjects=1, seed=5, shape=SHAPE)


def prepare(raw_dir, dataset_dir, **overrides):
    return prepare_case(RADIOGAN, raw_dir, dataset_dir, **{"image_size": SIZE, **overrides})


def datalist_of(dataset_dir):
    from scripts.prepare import load_datalist

    return load_datalist(dataset_dir)


@pytest.mark.slow
def test_prepare_writes_fixed_size_mips_png_and_a_stratified_datalist(cohort, tmp_path):
    out = tmp_path / "prepared"
    prepare(cohort, out)
    datalist = datalist_of(out)
    assert len(datalist["training"]) == 5 and len(datalist["validation"]) == 5
    assert sorted(it["label"] for it in datalist["validation"]) == [0, 1, 2, 3, 4]
    stored = json.loads((out / "datalist.json").read_text())
    assert stored["training"][0]["image"] == f"images/{datalist['training'][0]['patient_id']}.nii.gz"  # relative
    assert stored["written_by"] == {"program": "gan-bundles", "kind": "radiogan dataset"}
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    item = datalist["training"][0]
    img = nib.load(item["image"])
    data = np.asarray(img.dataobj)
    assert data.shape == tuple(SIZE) and data.dtype == np.float32
    assert 0.0 <= data.min() and 0.0 < data.max() <= 1.0
    # 2 mm pixels along R (axis 0, to the patient's left) and S (axis 1); padding is zeros at the border
    np.testing.assert_allclose(np.abs(img.affine[[0, 2], [0, 1]]), [2.0, 2.0])
    assert img.affine[2, 1] > 0 and (np.all(data[0] == 0) or np.all(data[-1] == 0))  # 23 -> 24 columns
    # the PNG preview shows the MIP head up: its brightest-uptake (darkest) pixel is the MIP's maximum
    png = plt_read(item["png"])
    assert png.shape[:2] == (SIZE[1], SIZE[0])
    assert np.isclose(png[..., 0].min(), 1.0 - data.max(), atol=0.02)
    # the truth SUV of the same patient, projected by hand, matches the stored MIP where the body is
    truth = np.asarray(nib.load(cohort / "truth" / f"{item['patient_id']}_suv.nii.gz").dataobj)
    assert abs(float(data.max()) - min(float(truth.max()), 30.0) / 30.0) < 0.02


def plt_read(path):
    from gan_core.figures import plt

    return plt.imread(path)


def test_a_mip_larger_than_the_fixed_size_skips_the_study_unless_cropping(one_study, tmp_path):
    error = user_error(prepare, one_study, tmp_path / "a", image_size=[16, 40])
    assert "no study could be prepared" in str(error) and "never stretched" in str(error)
    assert not (tmp_path / "a").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    prepare(one_study, tmp_path / "b", image_size=[16, 40], crop=True)
    assert np.asarray(nib.load(datalist_of(tmp_path / "b")["training"][0]["image"]).dataobj).shape == (16, 40)


def test_bad_inputs_name_the_problem(one_study, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in str(user_error(prepare, empty, tmp_path / "p1"))
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,label\nPET-001,melanoma\n")
    error = user_error(prepare, one_study, tmp_path / "p2", labels_csv=str(labels))
    assert "melanoma" in str(error) and error.field == "label"
    # a study without PatientWeight: SUV cannot be computed, the tag is named
    raw = tmp_path / "raw"
    shutil.copytree(one_study, raw, ignore=shutil.ignore_patterns("truth"))
    for f in sorted(raw.glob("PET-001/*/*/*.dcm")):
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f)
    assert "PatientWeight" in str(user_error(prepare, raw, tmp_path / "p3"))


def shared_metrics() -> list[str]:
    """The shared metrics both bundles' evaluate.json list: the same names, so metrics.json has the same keys."""
    lists = [json.loads((REPO / f"{b}_bundle" / "configs" / "evaluate.json").read_text())["metrics"]
             for b in ("radiogan", "ctstyle")]
    assert lists[0] == lists[1]
    return lists[0]


def fake_utility(folder):
    """A finished utility study with known numbers (the summary page must draw its curve)."""
    runs = [{"size": size, "seed": s, "arm": arm, "value": v}
            for size, base in ((2, 0.5), (4, 0.7)) for s in range(3)
            for arm, v in (("real", base), ("real+synthetic", base + 0.1), ("synthetic", base - 0.1))]
    summary = summarise_runs(runs, [2, 4], [0, 1, 2])
    write_utility_result(folder, {"sizes": [2, 4], "seeds": [0, 1, 2], "summary": summary, "measure": "accuracy",
                                  "size_unit": "studies per class", "passed": check_targets(summary)})
    return folder


def orange_pixels(png) -> int:
    """Pixels of the real+synthetic line's colour (tab:orange) in a PNG."""
    from gan_core.figures import plt

    image = plt_read(png)[..., :3]
    return int((np.abs(image - np.array(plt.matplotlib.colors.to_rgb("tab:orange"))).max(axis=-1) < 0.03).sum())


@pytest.mark.slow
def test_training_export_inference_and_evaluation_from_the_configs(cohort, tmp_path):
    size = [32, 40]  # MS-SSIM's three scales need sides of 28 px or more
    prepare(cohort, tmp_path / "prepared", image_size=size)
    settings = {**RADIOGAN.train_settings(tmp_path / "prepared", tmp_path / "out"), "train#trainer#max_epochs": 1}
    workflow = run_workflow(RADIOGAN, "training", "train.json", **settings)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2  # 5 training MIPs, batches of 2, last partial batch dropped
    assert {"d_total", "g_total", "d_acc"} <= set(trainer.state.output[0]["loss"])
    checkpoint = tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt"
    assert read_model(checkpoint).network["first_grid"] == [4, 5]  # from the prepared 32 x 40 images

    bundle = tmp_path / "bundle"
    shutil.copytree(RADIOGAN.root, bundle, ignore=shutil.ignore_patterns("data", "outputs", "models"))
    export_model(bundle, checkpoint, onnx=False)
    common = {"bundle_root": str(bundle), "output_dir": str(tmp_path / "results")}
    inference = run_workflow(RADIOGAN, "inference", "inference.json", **common, num_per_class=2,
                             classes=["lung", 4])
    manifest = json.loads((tmp_path / "results" / "inference" / "manifest.json").read_text())["images"]
    assert [m["class_name"] for m in manifest] == ["lung", "lung", "lymphoma", "lymphoma"]
    img = nib.load(tmp_path / "results" / "inference" / manifest[0]["image"])
    suv = np.asarray(img.dataobj)
    assert suv.shape == tuple(size) and 0.0 <= suv.min() and suv.max() <= 30.0
    assert img.header["descrip"].tobytes().startswith(b"SYNTHETIC")
    np.testing.assert_allclose(np.abs(img.affine[[0, 2], [0, 1]]), [2.0, 2.0])
    generator = inference.parser.get_parsed_content("model").load()
    with torch.no_grad():
        again = generator(torch.randn(1, 100), torch.tensor([3]))
    assert again.shape == (1, 1, *size)

    small_k = {"density": {"k": 2}, "coverage": {"k": 2}}  # 5 held-out MIPs: k-NN balls need more than k
    run_workflow(RADIOGAN, "evaluation", "evaluate.json", **common, dataset_dir=str(tmp_path / "prepared"),
                 num_per_class=3, classifier_epochs=1, walk_steps=4, class_pairs=[["lung", "lymphoma"]],
                 metric_options=small_k, num_bootstrap=50, utility_dir=str(fake_utility(tmp_path / "utility")))
    out = tmp_path / "results" / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["metrics"]) == shared_metrics()  # the same keys as ctstyle's metrics.json
    assert all(set(r) == set(RESULT_KEYS) for r in metrics["metrics"].values())
    assert metrics["metrics"]["ms_ssim_diversity"]["reference"]["value"] is not None  # real MIPs per class
    assert metrics["counts"]["generated"] == 15
    assert set(metrics["conditional_accuracy"]["per_class"]) == {"normal", "head_neck", "oesophagus", "lung",
                                                                  "lymphoma"}
    assert len(metrics["walks"]["axis_lung"]["ssim"]) == 3
    for png in ("walk_axis.png", "walk_lung_to_lymphoma.png", "closest_pixel.png", "closest_features.png"):
        assert plt_read(out / png).ndim == 3
    assert orange_pixels(out / "summary.png") > 30  # the utility curve of the study beside it is drawn
