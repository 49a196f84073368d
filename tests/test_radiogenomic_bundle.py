"""radiogenomic_bundle end to end on tiny data: training from the config, inference geometry and errors, evaluation."""

import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import RADIOGENOMIC, prepare_case, run_workflow, tree_hash

from bundles.errors import BundleInputError
from bundles.fileio import atomic_torch_save, written_by
from bundles.models import Model, read_model
from bundles.networks.radiogenomic import RadiogenomicDiscriminator

SIZE, GENES = 32, 12
PHENOTYPES = {"small_solid": (3, 40.0), "large_solid": (7, 40.0), "large_ggo": (7, -500.0)}  # radius px, HU


def _affine(offset: float) -> np.ndarray:
    """RAS affine of an axial slice with 1.875 mm pixels (60 mm over 32 px), flipped x as DICOM-derived slices."""
    affine = np.diag([-1.875, 1.875, 2.0, 1.0])
    affine[:3, 3] = [offset, -30.0, 12.5]
    return affine


def _lung(rng) -> np.ndarray:
    return -850.0 + 30.0 * rng.standard_normal((SIZE, SIZE))


def write_tiny_prepared(root: Path, patients_per_class: int = 3) -> tuple[Path, Path]:
    """A prepared dataset in the format of the preparation (NIfTI slices, npy genes, datalist.json) and a raw
    folder holding only ``phenotypes.csv``; genes 0-2 carry the phenotype."""
    rng = np.random.default_rng(0)
    dataset, raw = root / "prepared", root / "raw"
    for sub in ("images", "masks", "backgrounds", "genes"):
        (dataset / sub).mkdir(parents=True)
    raw.mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    entries, backgrounds, rows = [], [], []
    for c, (phenotype, (radius, hu)) in enumerate(PHENOTYPES.items()):
        for k in range(patients_per_class):
            pid = f"R01-{c}{k:02d}"
            rows.append({"patient_id": pid, "phenotype": phenotype})
            genes = rng.standard_normal(GENES).astype(np.float32)
            genes[c] += 3.0
            np.save(dataset / "genes" / f"{pid}.npy", genes)
            for s in range(2):
                disk = (xx - 16) ** 2 + (yy - 16) ** 2 <= (radius - s) ** 2
                image = np.where(disk, hu, _lung(rng)).astype(np.float32)
                for sub, data in (("images", image), ("masks", disk.astype(np.uint8))):
                    nib.save(nib.Nifti1Image(data, _affine(10.0 * c + k)), dataset / sub / f"{pid}_s{s:03d}.nii.gz")
                entries.append({"patient_id": pid, "image": str(dataset / "images" / f"{pid}_s{s:03d}.nii.gz"),
                                "mask": str(dataset / "masks" / f"{pid}_s{s:03d}.nii.gz"),
                                "genes": str(dataset / "genes" / f"{pid}.npy")})
            path = dataset / "backgrounds" / f"{pid}_v0_s000.nii.gz"
            nib.save(nib.Nifti1Image(_lung(rng).astype(np.float32), _affine(-5.0 * k)), path)
            backgrounds.append({"patient_id": pid, "image": str(path), "split": "training"})
    (dataset / "gene_names.txt").write_text("\n".join(f"GENE{j}" for j in range(GENES)) + "\n")
    np.savez(dataset / "gene_stats.npz", mean=np.zeros(GENES), std=np.ones(GENES),
             names=np.asarray([f"GENE{j}" for j in range(GENES)]))
    validation = {e["patient_id"] for e in entries if e["patient_id"].endswith("02")}
    datalist = {"written_by": written_by("radiogenomic dataset"), "format": 2, "settings": {"image_size": SIZE},
                "training": [e for e in entries if e["patient_id"] not in validation],
                "validation": [e for e in entries if e["patient_id"] in validation],
                "backgrounds": backgrounds, "gene_names": "gene_names.txt", "gene_stats": "gene_stats.npz",
                "num_genes": GENES, "image_size": SIZE}
    (dataset / "datalist.json").write_text(json.dumps(datalist))
    with open(raw / "phenotypes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["patient_id", "phenotype"])
        writer.writeheader()
        writer.writerows(rows)
    return raw, dataset


def _network(model_type: str) -> dict:
    return {"builder": "bundles.networks.radiogenomic.build_generator", "model_type": model_type,
            "image_fusion": True, "num_genes": GENES, "image_size": SIZE, "base_channels": 4, "code_dim": 128,
            "noise_dim": 10, "hidden": 16}


def _inputs() -> dict:
    return {"gene_names": [f"GENE{j}" for j in range(GENES)], "gene_mean": [0.0] * GENES,
            "gene_std": [1.0] * GENES, "image_size": SIZE}


def _write_checkpoint(path: Path, model_type: str) -> Path:
    """A training checkpoint with an untrained generator and its network record."""
    from bundles.models import build_network

    network = _network(model_type)
    atomic_torch_save({"generator": build_network(network).state_dict(),
                       "network": {"network": network, "inputs": _inputs()}}, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("radiogenomic")
    raw, dataset = write_tiny_prepared(root)
    torch.manual_seed(0)
    proposed = _write_checkpoint(root / "proposed.pt", "proposed")
    baseline = _write_checkpoint(root / "baseline.pt", "baseline")
    return {"root": root, "raw": raw, "dataset": dataset, "proposed": proposed, "baseline": baseline}


def test_inference_writes_synthetic_files_named_by_index_with_the_backgrounds_geometry(tiny, tmp_path):
    before = tree_hash(tiny["dataset"])
    run_workflow(RADIOGENOMIC, "inference", "inference.json", dataset_dir=str(tiny["dataset"]),
                 output_dir=str(tmp_path), ckpt_path=str(tiny["proposed"]), num_backgrounds=2, num_profiles=3)
    assert tree_hash(tiny["dataset"]) == before
    folder = tmp_path / "inference"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 6 and manifest["written_by"]["kind"] == "radiogenomic inference"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".png") == [
        f"b{i:02d}_g{j:02d}.png" for i in range(2) for j in range(3)]
    for record in manifest["pairs"]:
        background = nib.load(manifest["backgrounds"][record["background_index"]])
        image, mask = nib.load(folder / record["image"]), nib.load(folder / record["mask"])
        for out in (image, mask):
            assert out.shape == background.shape
            np.testing.assert_allclose(out.affine, background.affine)
            assert out.header["descrip"].tobytes().startswith(b"SYNTHETIC")
        hu = np.asarray(image.dataobj)
        assert hu.dtype == np.float32 and hu.min() >= -1000 and hu.max() <= 500
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        png = plt.imread(folder / record["png"])
        assert png.ndim == 3 and png.std() > 0.05  # a drawn figure, not a blank canvas
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_inference_rejects_bad_inputs(tiny, tmp_path):
    from bundles.workflows.radiogenomic_inference import synthesise

    model = read_model(tiny["proposed"])
    datalist = json.loads((tiny["dataset"] / "datalist.json").read_text())
    background, genes = datalist["backgrounds"][0]["image"], datalist["training"][0]["genes"]
    net = model

    short = tmp_path / "short.npy"
    np.save(short, np.zeros(GENES - 1, np.float32))
    with pytest.raises(BundleInputError, match=r"short\.npy.*11 values.*12 genes"):
        synthesise(net, [background], [short], tmp_path / "out")
    with_nan = tmp_path / "nan.npy"
    np.save(with_nan, np.r_[np.zeros(GENES - 1), np.nan].astype(np.float32))
    with pytest.raises(BundleInputError, match=r"nan\.npy.*NaN"):
        synthesise(net, [background], [with_nan], tmp_path / "out")
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.full((16, 16), -800, np.float32), np.eye(4)), small)
    with pytest.raises(BundleInputError, match=r"small\.nii\.gz.*32 x 32"):
        synthesise(net, [small], [genes], tmp_path / "out")
    normalised = tmp_path / "normalised.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32), np.eye(4)), normalised)
    with pytest.raises(BundleInputError, match="not look like a lung CT"):
        synthesise(net, [normalised], [genes], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()

    foreign = tmp_path / "disc.pt"
    atomic_torch_save({"generator": RadiogenomicDiscriminator(GENES, SIZE, 4, hidden=16).state_dict(),
                       "network": {"network": _network("proposed")}}, foreign)
    with pytest.raises(BundleInputError, match="does not fit the RadiogenomicGenerator"):
        read_model(foreign).load()
    baseline = read_model(tiny["baseline"])  # baseline weights under a record that says "proposed"
    with pytest.raises(BundleInputError, match="does not fit"):
        Model(baseline.path, _network("proposed"), {}, baseline.state).load()


class IdentityGenerator(torch.nn.Module):
    """Returns the background unchanged with an empty mask; its gene code is the raw profile."""

    noise_dim = 10

    def forward(self, background, genes, noise):
        return background, -torch.ones_like(background)

    def encode_genes(self, genes):
        return genes


@pytest.mark.slow
def test_evaluation_of_an_identity_generator_has_known_numbers(tiny, tmp_path):
    from bundles.workflows.radiogenomic_evaluation import evaluate

    identity = Model(Path("identity.pt"), {}, {}, {})
    identity.load = lambda device="cpu", network=None: IdentityGenerator()
    metrics = evaluate(identity, tiny["dataset"], tmp_path / "evaluation",
                       truth_csv=tiny["raw"] / "phenotypes.csv", num_backgrounds=4, classifier_epochs=2)
    table = metrics["table1"]["proposed"]
    for region in ("whole_slice", "background_region"):
        assert table[region]["mse"] == 0 and table[region]["psnr"] == 100.0
        assert table[region]["ssim"] == pytest.approx(1.0)
        assert table[region]["num_images"] == 4 * 9
    codes = metrics["gene_codes"]
    assert codes["proposed code"] == codes["raw genes"]  # identical representation, identical scores
    assert "baseline code" not in codes and metrics["models"] == ["proposed"]
    assert metrics["controllability"]["chance"] == pytest.approx(1 / 3)
    rows = metrics["radiogenomic_map"]
    assert sum(r["num_subjects"] for r in rows) == 9
    assert all(8 < r["diameter_mm"] < 28 for r in rows)  # radius 3-7 px of 1.875 mm
    assert all(np.isnan(r["generated_diameter_mm"]) for r in rows)  # the identity draws no nodule
    for name in ("metrics.json", "radiogenomic_map.csv", "radiogenomic_map.png", "gene_code_tsne.png", "synthesis.png"):
        assert (tmp_path / "evaluation" / name).stat().st_size > 100


@pytest.mark.slow
def test_evaluation_config_with_both_models(tiny, tmp_path):
    run_workflow(RADIOGENOMIC, "evaluation", "evaluate.json", dataset_dir=str(tiny["dataset"]),
                 output_dir=str(tmp_path), truth_csv=str(tiny["raw"] / "phenotypes.csv"),
                 proposed_ckpt=str(tiny["proposed"]), baseline_ckpt=str(tiny["baseline"]), num_backgrounds=2,
                 classifier_epochs=2)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["models"] == ["baseline", "proposed"]
    assert set(metrics["gene_codes"]) == {"raw genes", "baseline code", "proposed code"}
    assert set(metrics["controllability"]) >= {"proposed", "baseline", "chance"}
    assert 0 <= metrics["table1"]["baseline"]["whole_slice"]["ssim"] <= 1
    assert (tmp_path / "evaluation" / "metrics.json").is_file()


@pytest.fixture(scope="module")
def demo_prepared(tmp_path_factory):
    """A 4-patient demo cohort (40 genes, 128 x 128 CT) prepared at 32 px by the preparation config."""
    from bundles.phantoms.nsclc import write_nsclc_cohort

    root = tmp_path_factory.mktemp("radiogenomic_demo")
    write_nsclc_cohort(root / "raw", subjects=4, seed=0, n_genes=40, size=128, workers=1)
    prepare_case(RADIOGENOMIC, root / "raw", root / "prepared")
    return root / "prepared"


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["proposed", "baseline"])
def test_two_iterations_from_the_training_config(demo_prepared, tmp_path, model_type):
    """2 iterations train on the prepared dataset (read only) and write their outputs and their record."""
    before = tree_hash(demo_prepared)
    settings = {**RADIOGENOMIC.train_settings(demo_prepared, tmp_path / "out"), "network#model_type": model_type,
                "train#dataloader#batch_size": 2, "train#trainer#max_epochs": 1, "train#trainer#epoch_length": 2}
    workflow = run_workflow(RADIOGENOMIC, "training", "train.json", **settings)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    losses = trainer.state.output[0]["loss"]
    expected = {"d_i", "d_is", "d_isg", "d_total", "g_i", "g_is", "g_isg", "g_background_l1", "g_total"}
    assert set(losses) == expected | ({"g_kl"} if model_type == "baseline" else set())
    assert all(np.isfinite(v) for v in losses.values())
    assert tree_hash(demo_prepared) == before
    checkpoint = torch.load(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt", weights_only=True)
    assert set(checkpoint) == {"network", "generator", "discriminator", "g_optimizer", "d_optimizer", "trainer"}
    record = read_model(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt")
    assert record.network["model_type"] == model_type and record.network["image_size"] == 32
    assert len(record.inputs["gene_names"]) == record.network["num_genes"] == len(record.inputs["gene_mean"])
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["datalist"]["sha256"] and info["seed"] == 0 and info["packages"]["monai"]
    grid = plt.imread(tmp_path / "out" / "samples" / "epoch_0001.png")
    assert grid.ndim == 3 and grid.std() > 0.05


def test_pair_background_draws_reproducibly_from_paths_or_loaded_slices():
    from bundles.transforms.sampling import PairBackgroundd

    paths = [f"b{i}.nii.gz" for i in range(3)]
    loaded = [{"image": torch.full((1, 4, 4), float(i))} for i in range(3)]  # as a CacheDataset of them gives
    pair = PairBackgroundd(loaded).set_random_state(seed=3)
    drawn = [int(pair({"image": "x"})["background"][0, 0, 0]) for _ in range(30)]
    assert sorted(set(drawn)) == [0, 1, 2]
    again = PairBackgroundd(paths).set_random_state(seed=3)
    assert [paths.index(again({})["background"]) for _ in range(30)] == drawn
    with pytest.raises(ValueError, match="at least one"):
        PairBackgroundd([])
