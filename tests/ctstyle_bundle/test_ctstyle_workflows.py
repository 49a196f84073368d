"""ctstyle trainer, inference and evaluation on tiny label maps; train.json on a tiny demo cohort."""

import json
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import CASE_BY_NAME, prepare_case, run_workflow, tree_hash, user_error
from scripts.inference import run_inference
from scripts.labels import LabelToOneHot
from scripts.networks import CTStyleDiscriminator, CTStyleGenerator
from scripts.style_metrics import (
    GROUPS,
    dice_per_group,
    label_groups,
    threshold_resegmentation,
)
from scripts.trainer import CTStyleTrainer, map_to_display

from gan_core.evaluation.metrics import RESULT_KEYS
from gan_core.figures import plt
from gan_core.models import Model
from gan_core.vgg import VGG19Features

sys.path.insert(0, str(Path(__file__).parent))
from test_ctstyle_labels import toy_map  # noqa: E402

CTSTYLE = CASE_BY_NAME["ctstyle"]

TINY_G = {"base_channels": 4, "num_levels": 3, "max_channels": 8, "noise_grid": 4}
HU_OF = {0: -1000.0, 50: 40.0, 100: -850.0, 150: 45.0, 200: 450.0, 230: 30.0}


def toy_ct_hu(label: torch.Tensor, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.vectorize(HU_OF.get)(label[0].numpy()).astype(np.float32)
    return hu + rng.normal(0, 20, hu.shape).astype(np.float32)


def quiet_vgg(**kwargs) -> VGG19Features:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VGG19Features(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("w_ms", [0.0, 0.5])
def test_trainer_two_iterations_loss_terms_and_grid_columns(w_ms):
    torch.manual_seed(0)
    label = toy_map(32)
    onehot = LabelToOneHot()(label)[None]
    image = torch.from_numpy(toy_ct_hu(label, 0))[None, None].clamp(-1000, 500) / 750 + 1 / 3
    data = [{"image": image[0], "label": onehot[0]}] * 2
    loader = torch.utils.data.DataLoader(data, batch_size=1)
    g = CTStyleGenerator(**TINY_G)
    d = CTStyleDiscriminator(base_channels=4, num_layers=2, max_channels=8)
    before = [p.clone() for p in g.parameters()]
    trainer = CTStyleTrainer(
        "cpu", 1, loader, g, d, torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3),
        vgg=quiet_vgg(layers=("relu1_1", "relu2_1", "relu2_2")), style_image=image, style_label=onehot,
        style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_2",), loss_size=16, w_ms=w_ms,
    )
    trainer.run()
    loss = trainer.state.output[0]["loss"]
    mode_seeking = {"g_mode_seeking"} if w_ms > 0 else set()
    assert set(loss) == {"d_total", "g_adv", "g_style", "g_content", "g_tv", "g_total"} | mode_seeking
    assert all(np.isfinite(v) for v in loss.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))
    assert len(trainer._content_cache) == 1  # the same content image twice: features computed once
    batch = trainer.prepare({"image": image, "label": onehot})
    columns = trainer.sample_columns(batch, trainer.generate(batch))
    second = ["generated, 2nd z"] if w_ms > 0 else []
    assert [c[0] for c in columns] == ["map", "content image", "style image", "generated"] + second
    assert all(c[1].shape == (1, 1, 32, 32) for c in columns)
    assert float(map_to_display(onehot).min()) == -1.0 and float(map_to_display(onehot).max()) == 1.0


def tiny_model(size: int = 32) -> Model:
    """An untrained tiny generator as a model read from disk (its record and weights)."""
    torch.manual_seed(0)
    network = {"builder": "scripts.networks.CTStyleGenerator", "noise_dim": 200, **TINY_G}
    generator = CTStyleGenerator(**TINY_G)
    return Model(Path("tiny.pt"), network, {"image_size": size}, generator.state_dict())


def test_inference_geometry_seeds_and_perturbation(tmp_path):
    label = toy_map(32)
    affine = np.array([[-0.8, 0, 0, 12.0], [0, -0.8, 0, -5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    (tmp_path / "P1").mkdir()
    nib.save(nib.Nifti1Image(label[0].numpy().astype(np.uint8), affine), str(tmp_path / "P1" / "label_s000.nii.gz"))
    nib.save(nib.Nifti1Image(toy_ct_hu(label, 1), affine), str(tmp_path / "style.nii.gz"))
    model = tiny_model()
    out = tmp_path / "out"
    manifest = run_inference(model, tmp_path / "P1" / "label_s000.nii.gz", out, style_image=tmp_path / "style.nii.gz",
                             seeds=[3, 4], perturb=True, perturb_magnitude_px=2.0, perturb_smoothness_px=6.0)
    assert [m["seed"] for m in manifest] == [3, 4]
    assert [m["image"] for m in manifest] == ["map00/seed_003.nii.gz", "map00/seed_004.nii.gz"]  # no input ID
    a, b = (nib.load(out / m["image"]) for m in manifest)
    np.testing.assert_allclose(a.affine, affine)
    assert a.header["descrip"].tobytes().startswith(b"SYNTHETIC")
    arr_a, arr_b = np.asarray(a.dataobj), np.asarray(b.dataobj)
    assert arr_a.shape == (32, 32) and arr_a.dtype == np.float32
    assert -1000.0 <= arr_a.min() and arr_a.max() <= 500.0
    assert np.abs(arr_a - arr_b).mean() > 1.0  # seeds give distinct images
    perturbed = np.asarray(nib.load(out / manifest[0]["label"]).dataobj)
    assert set(np.unique(perturbed)) <= {0, 50, 100, 150, 200, 230} and (perturbed != label[0].numpy()).any()
    png = plt.imread(out / manifest[0]["png"])
    assert png.ndim == 3 and png.std() > 0.05
    stored = json.loads((out / "manifest.json").read_text())
    assert stored["images"] == manifest and stored["maps"] == [str(tmp_path / "P1" / "label_s000.nii.gz")]
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    # A map of another size than the model's is refused before anything is written.
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.uint8), affine), str(tmp_path / "small.nii.gz"))
    assert "differs from the model's" in str(user_error(run_inference, model, tmp_path / "small.nii.gz", tmp_path / "o2"))
    assert not (tmp_path / "o2").exists()
    bad = label[0].numpy().astype(np.uint8)
    bad[0, 0] = 77
    nib.save(nib.Nifti1Image(bad, affine), str(tmp_path / "bad.nii.gz"))
    assert "77" in str(user_error(run_inference, model, tmp_path / "bad.nii.gz", tmp_path / "o3"))


def test_inference_never_replaces_a_folder_it_did_not_write(tmp_path):
    label = toy_map(32)
    nib.save(nib.Nifti1Image(label[0].numpy().astype(np.uint8), np.eye(4)), str(tmp_path / "label.nii.gz"))
    precious = tmp_path / "run"
    (precious / "checkpoints").mkdir(parents=True)
    (precious / "checkpoints" / "checkpoint_latest.pt").write_bytes(b"weights")
    before = tree_hash(precious)
    error = user_error(run_inference, tiny_model(), tmp_path / "label.nii.gz", precious, seeds=[0])
    assert "never replaced" in str(error) and error.field == "inference_dir"
    assert tree_hash(precious) == before


def test_resegmentation_dice_and_seed_diversity():
    from scripts.evaluation import seed_diversity

    label = toy_map(64)
    hu = toy_ct_hu(label, 2)
    groups = threshold_resegmentation(hu)
    dice = dice_per_group(groups, label_groups(label[0].numpy()))
    assert dice.shape == (len(GROUPS),) and np.all(dice > 0.95)  # a CT with the map's HU re-segments to it
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert seed_diversity(torch.cat([x, x, x])) == pytest.approx(1.0, abs=1e-4)  # seeds ignored: 1
    assert seed_diversity(torch.cat([x, torch.rand(2, 1, 32, 32) * 2 - 1])) < 0.2  # independent noise: about 0


def _toy_cohort(num: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` (CT in [-1, 1], one-hot map) pairs: toy maps shifted per patient, each organ at one fixed value,
    plus white noise of SD ``noise`` (patient detail the map does not fix)."""
    maps = torch.stack([torch.roll(toy_map(32).as_tensor(), (i % 5 - 2, i // 5 - 2), dims=(1, 2)) for i in range(num)])
    onehots = torch.cat([LabelToOneHot()(m)[None] for m in maps])
    value_of_organ = torch.tensor([-1.0, -0.1, -0.7, 0.0, 0.5, 0.05])
    cts = (onehots * value_of_organ[None, :, None, None]).sum(1, keepdim=True)
    return (cts + noise * torch.randn(cts.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1), onehots


def test_the_conditional_mean_null_of_the_memorisation_ratio():
    from scripts.evaluation import memorisation_null
    from scripts.style_metrics import paint_organ_means

    from gan_core.evaluation.metrics import SampleSets

    train_cts, train_maps = _toy_cohort(12, 0.0, seed=0)
    held_cts, held_maps = _toy_cohort(20, 0.0, seed=1)
    held_cts, held_maps = held_cts[12:], held_maps[12:]  # other shifts than the training patients'
    torch.testing.assert_close(paint_organ_means(train_cts, train_maps, held_maps), held_cts)  # nothing unfixed
    sets = SampleSets(held_cts, train_cts, held_cts)
    assert memorisation_null(sets, train_maps, held_maps, seed=0, num_bootstrap=20)["value"] == pytest.approx(1.0)
    # with patient detail the maps do not fix, the painted means copy nothing and still sit nearer the training set
    noisy_train, _ = _toy_cohort(12, 0.2, seed=2)
    noisy_held, _ = _toy_cohort(20, 0.2, seed=3)
    null = memorisation_null(SampleSets(noisy_held[12:], noisy_train, noisy_held[12:]), train_maps, held_maps,
                             seed=0, num_bootstrap=20)
    assert null["value"] < 0.9 and "copies nothing" in null["what"]  # 0.86


@pytest.mark.slow
def test_preparation_training_export_inference_and_evaluation_from_the_configs(tmp_path):
    from scripts.demo_cohort import write_demo_cohort

    from gan_core.export import export_model

    raw = write_demo_cohort(tmp_path / "raw", subjects=4, size=32, seed=1)
    raw_hash = tree_hash(raw)
    prepare_case(CTSTYLE, raw, tmp_path / "prepared")
    datalist = json.loads((tmp_path / "prepared" / "datalist.json").read_text())
    assert datalist["style"]["patient_id"] == "CT-004" and {e["patient_id"] for e in datalist["evaluation"]} == {"CT-003"}
    settings = {**CTSTYLE.train_settings(tmp_path / "prepared", tmp_path / "out"), "loss_size": None,
                "train#trainer#max_epochs": 1, "train#trainer#epoch_length": 2}
    workflow = run_workflow(CTSTYLE, "training", "train.json", **settings)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    assert {"d_total", "g_style", "g_content", "g_tv", "g_mode_seeking", "g_total"} <= set(trainer.state.output[0]["loss"])
    assert plt.imread(tmp_path / "out" / "samples" / "epoch_0001.png").std() > 0.05
    assert tree_hash(raw) == raw_hash

    bundle = tmp_path / "bundle"
    import shutil

    shutil.copytree(CTSTYLE.root, bundle, ignore=shutil.ignore_patterns("data", "outputs", "models"))
    export_model(bundle, tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt", onnx=False)
    common = {"bundle_root": str(bundle), "dataset_dir": str(tmp_path / "prepared"), "output_dir": str(tmp_path / "res")}
    run_workflow(CTSTYLE, "inference", "inference.json", **common, seeds=[0, 1])
    manifest = json.loads((tmp_path / "res" / "inference" / "manifest.json").read_text())
    first = nib.load(tmp_path / "res" / "inference" / manifest["images"][0]["image"])
    np.testing.assert_allclose(first.affine, nib.load(manifest["maps"][0]).affine)

    from test_radiogan_workflows import fake_utility, orange_pixels, shared_metrics

    small_k = {name: {"k": 2} for name in ("precision", "recall", "density", "coverage")}  # 4 generated CTs
    run_workflow(CTSTYLE, "evaluation", "evaluate.json", **common, seeds=[0, 1], max_maps=2, loss_size=None,
                 metric_options=small_k, num_bootstrap=50, utility_dir=str(fake_utility(tmp_path / "utility")))
    out = tmp_path / "res" / "evaluation"
    result = json.loads((out / "metrics.json").read_text())
    assert not (out / "evaluation.json").exists()
    assert list(result["metrics"]) == shared_metrics()  # the same keys as RadioGAN's metrics.json
    assert all(set(r) == set(RESULT_KEYS) for r in result["metrics"].values())
    # generated from the 2 held-out maps x 2 seeds; train: 40 training CTs + the style CT; held-out: CT-003's 20
    assert result["metrics"]["memorisation_pixel"]["n"] == {"generated": 4, "train": 41, "heldout": 20}
    assert set(result["passed"]) == {"gram_reduction", "dice", "seed_ms_ssim", "memorisation_with_precision"}
    assert 0.0 < result["memorisation_null"]["value"] and len(result["memorisation_null"]["ci95"]) == 2
    assert 0.0 < result["summary"]["seed_ms_ssim"] <= 1.0
    for name in ("examples.png", "gram_distances.png", "organ_hu.png", "resegmentation.png", "closest_pixel.png"):
        assert plt.imread(out / name).ndim == 3
    assert orange_pixels(out / "summary.png") > 30  # the utility curve is drawn
