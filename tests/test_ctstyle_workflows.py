"""ctstyle trainer, inference and evaluation on tiny label maps; train.json on a tiny demo cohort."""

import json
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from bundles.engines.ctstyle import CTStyleTrainer, map_to_display
from bundles.errors import BundleInputError
from bundles.evaluation.style_metrics import (
    GROUPS,
    dice_per_group,
    label_groups,
    mean_pairwise_ssim,
    threshold_resegmentation,
)
from bundles.networks.ctstyle import CTStyleDiscriminator, CTStyleGenerator
from bundles.networks.vgg import VGG19Features
from bundles.transforms.labels import LabelToOneHot
from bundles.workflows.ctstyle_inference import run_inference

sys.path.insert(0, str(Path(__file__).parent))
from test_ctstyle_labels import toy_map  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "ctstyle_bundle" / "configs"
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


def test_inference_geometry_seeds_and_perturbation(tmp_path):
    label = toy_map(32)
    affine = np.array([[-0.8, 0, 0, 12.0], [0, -0.8, 0, -5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    (tmp_path / "P1").mkdir()
    nib.save(nib.Nifti1Image(label[0].numpy().astype(np.uint8), affine), str(tmp_path / "P1" / "label_s000.nii.gz"))
    nib.save(nib.Nifti1Image(toy_ct_hu(label, 1), affine), str(tmp_path / "style.nii.gz"))
    torch.manual_seed(0)
    g = CTStyleGenerator(**TINY_G).eval()
    out = tmp_path / "out"
    manifest = run_inference(g, tmp_path / "P1" / "label_s000.nii.gz", tmp_path / "style.nii.gz", out, seeds=[3, 4],
                             perturb=True, perturb_magnitude_px=2.0, perturb_smoothness_px=6.0)
    assert [m["seed"] for m in manifest] == [3, 4]
    a, b = (nib.load(m["image"]) for m in manifest)
    np.testing.assert_allclose(a.affine, affine)
    arr_a, arr_b = np.asarray(a.dataobj), np.asarray(b.dataobj)
    assert arr_a.shape == (32, 32) and arr_a.dtype == np.float32
    assert -1000.0 <= arr_a.min() and arr_a.max() <= 500.0
    assert np.abs(arr_a - arr_b).mean() > 1.0  # seeds give distinct images
    perturbed = np.asarray(nib.load(manifest[0]["label"]).dataobj)
    assert set(np.unique(perturbed)) <= {0, 50, 100, 150, 200, 230} and (perturbed != label[0].numpy()).any()
    assert Path(manifest[0]["png"]).stat().st_size > 1000
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert not list(out.glob("*.partial"))
    # A map of another size than the style image is refused before anything is written.
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.uint8), affine), str(tmp_path / "small.nii.gz"))
    with pytest.raises(BundleInputError, match="differs from the style image"):
        run_inference(g, tmp_path / "small.nii.gz", tmp_path / "style.nii.gz", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    bad = label[0].numpy().astype(np.uint8)
    bad[0, 0] = 77
    nib.save(nib.Nifti1Image(bad, affine), str(tmp_path / "bad.nii.gz"))
    with pytest.raises(BundleInputError, match="77"):
        run_inference(g, tmp_path / "bad.nii.gz", tmp_path / "style.nii.gz", tmp_path / "out3")


def test_resegmentation_dice_and_ssim():
    label = toy_map(64)
    hu = toy_ct_hu(label, 2)
    groups = threshold_resegmentation(hu)
    dice = dice_per_group(groups, label_groups(label[0].numpy()))
    assert dice.shape == (len(GROUPS),) and np.all(dice > 0.95)  # a CT with the map's HU re-segments to it
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert mean_pairwise_ssim(torch.cat([x, x])) == pytest.approx(1.0, abs=1e-4)
    assert mean_pairwise_ssim(torch.cat([x, torch.rand(1, 1, 32, 32) * 2 - 1])) < 0.5


@pytest.mark.slow
def test_train_json_two_iterations_then_inference_and_evaluation(tmp_path):
    pytest.importorskip("bundles.phantoms.ctseg")
    pytest.importorskip("bundles.io.datalists")
    from bundles.phantoms.ctseg import write_ctseg_cohort

    raw = write_ctseg_cohort(tmp_path / "raw", subjects=4, size=32, seed=1)
    common = {"bundle_root": str(CONFIGS.parent), "dataset_dir": str(raw), "output_dir": str(tmp_path / "out"),
              "g_base_channels": 4, "g_num_levels": 3, "g_max_channels": 8}
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    settings = {**common, "image_size": 32, "loss_size": None, "d_base_channels": 4, "d_num_layers": 2,
                "d_max_channels": 8, "train#trainer#max_epochs": 1, "train#trainer#epoch_length": 2}
    for key, value in settings.items():
        parser[key] = value
    parser.get_parsed_content("training")
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    assert {"d_total", "g_style", "g_content", "g_tv", "g_mode_seeking", "g_total"} <= set(trainer.state.output[0]["loss"])
    assert (tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt").exists()
    assert (tmp_path / "out" / "samples" / "epoch_0001.png").exists()

    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.json"))
    for key, value in {**common, "seeds": [0, 1]}.items():
        inference[key] = value
    manifest = inference.get_parsed_content("inference")
    first = nib.load(manifest[0]["image"])
    np.testing.assert_allclose(first.affine, nib.load(manifest[0]["map"]).affine)

    evaluation = ConfigParser()
    evaluation.read_config(str(CONFIGS / "evaluate.json"))
    for key, value in {**common, "seeds": [0, 1], "max_maps": 1}.items():
        evaluation[key] = value
    result = evaluation.get_parsed_content("evaluation")
    assert set(result["passed"]) == {"gram_reduction", "dice", "pairwise_ssim"}
    for name in ("evaluation.json", "examples.png", "gram_distances.png", "organ_hu.png", "resegmentation.png"):
        assert (tmp_path / "out" / "evaluation" / name).stat().st_size > 100
