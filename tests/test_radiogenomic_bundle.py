"""radiogenomic_bundle end to end on tiny data: training from the config, inference geometry and errors, evaluation."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from bundles import REPO_ROOT
from bundles.errors import BundleInputError
from bundles.fileio import atomic_torch_save
from bundles.networks.radiogenomic import MCGANGenerator, RadiogenomicDiscriminator, RadiogenomicGenerator

CONFIGS = REPO_ROOT / "radiogenomic_bundle" / "configs"
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
    """A prepared dataset in the format of ``ensure_prepared`` (NIfTI slices, npy genes, datalist.json) and a raw
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
            backgrounds.append({"patient_id": pid, "image": str(path)})
    (dataset / "gene_names.txt").write_text("\n".join(f"GENE{j}" for j in range(GENES)) + "\n")
    validation = {e["patient_id"] for e in entries if e["patient_id"].endswith("02")}
    datalist = {"training": [e for e in entries if e["patient_id"] not in validation],
                "validation": [e for e in entries if e["patient_id"] in validation],
                "backgrounds": backgrounds, "gene_names": str(dataset / "gene_names.txt"),
                "num_genes": GENES, "image_size": SIZE}
    (dataset / "datalist.json").write_text(json.dumps(datalist))
    with open(raw / "phenotypes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["patient_id", "phenotype"])
        writer.writeheader()
        writer.writerows(rows)
    return raw, dataset


def _tiny_net_settings():
    return {"num_genes": GENES, "image_size": SIZE, "base_channels": 4, "hidden": 16}


def _write_checkpoint(path: Path, generator: torch.nn.Module) -> Path:
    atomic_torch_save({"generator": generator.state_dict()}, path)
    return path


def _parse(config: str, overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update(overrides)
    return parser


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("radiogenomic")
    raw, dataset = write_tiny_prepared(root)
    torch.manual_seed(0)
    proposed = _write_checkpoint(root / "proposed.pt", RadiogenomicGenerator(**_tiny_net_settings()))
    baseline = _write_checkpoint(root / "baseline.pt", MCGANGenerator(**_tiny_net_settings()))
    return {"root": root, "raw": raw, "dataset": dataset, "proposed": proposed, "baseline": baseline}


def _inference_overrides(tiny, out: Path, **extra) -> dict:
    return {"dataset_dir": str(tiny["dataset"]), "output_dir": str(out), "ckpt_path": str(tiny["proposed"]),
            "g_channels": 4, "gene_hidden": 16, "num_backgrounds": 2, "num_profiles": 3, **extra}


def test_inference_outputs_have_the_backgrounds_geometry(tiny, tmp_path):
    records = _parse("inference.json", _inference_overrides(tiny, tmp_path)).get_parsed_content("inference")[0]
    assert len(records) == 2 * 3
    manifest = json.loads((tmp_path / "inference" / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 6
    for record in records:
        background = nib.load(record["background"])
        image, mask = nib.load(record["image"]), nib.load(record["mask"])
        for out in (image, mask):
            assert out.shape == background.shape
            np.testing.assert_allclose(out.affine, background.affine)
        hu = np.asarray(image.dataobj)
        assert hu.dtype == np.float32 and hu.min() >= -1000 and hu.max() <= 500
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        assert Path(record["png"]).stat().st_size > 1000
    assert not (tmp_path / "inference.partial").exists()


def test_inference_rejects_bad_inputs(tiny, tmp_path):
    from bundles.workflows.radiogenomic_inference import load_generator, synthesise

    net = load_generator(RadiogenomicGenerator(**_tiny_net_settings()), tiny["proposed"])
    datalist = json.loads((tiny["dataset"] / "datalist.json").read_text())
    background, genes = datalist["backgrounds"][0]["image"], datalist["training"][0]["genes"]

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

    foreign = _write_checkpoint(tmp_path / "disc.pt", RadiogenomicDiscriminator(GENES, SIZE, 4, hidden=16))
    with pytest.raises(BundleInputError, match="does not fit the configured RadiogenomicGenerator"):
        load_generator(RadiogenomicGenerator(**_tiny_net_settings()), foreign)
    with pytest.raises(BundleInputError, match="does not fit"):  # baseline weights into the proposed network
        load_generator(RadiogenomicGenerator(**_tiny_net_settings()), tiny["baseline"])


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

    ckpt = tmp_path / "identity.pt"
    atomic_torch_save({"generator": {}}, ckpt)
    metrics = evaluate(IdentityGenerator(), ckpt, tiny["dataset"], tmp_path / "evaluation",
                       phenotype_csv=tiny["raw"] / "phenotypes.csv", num_backgrounds=4, classifier_epochs=2)
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
    parser = _parse("evaluate.json", {
        "raw_dir": str(tiny["raw"]), "dataset_dir": str(tiny["dataset"]), "output_dir": str(tmp_path),
        "proposed_ckpt": str(tiny["proposed"]), "baseline_ckpt": str(tiny["baseline"]),
        "g_channels": 4, "gene_hidden": 16, "num_backgrounds": 2, "classifier_epochs": 2,
    })
    metrics = parser.get_parsed_content("evaluation")[0]
    assert metrics["models"] == ["baseline", "proposed"]
    assert set(metrics["gene_codes"]) == {"raw genes", "baseline code", "proposed code"}
    assert set(metrics["controllability"]) >= {"proposed", "baseline", "chance"}
    assert 0 <= metrics["table1"]["baseline"]["whole_slice"]["ssim"] <= 1
    assert (tmp_path / "evaluation" / "metrics.json").is_file()


@pytest.fixture(scope="module")
def demo_cohort(tmp_path_factory):
    """A 4-patient demo cohort (40 genes, 128 x 128 CT); prepared by the first training test that runs."""
    from bundles.phantoms.nsclc import write_nsclc_cohort

    root = tmp_path_factory.mktemp("radiogenomic_demo")
    write_nsclc_cohort(root / "raw", subjects=4, seed=0, n_genes=40, size=128, workers=1)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["proposed", "baseline"])
def test_two_iterations_from_the_training_config(demo_cohort, tmp_path, model_type):
    """The config's ensure_prepared prepares the demo cohort, then 2 iterations train and write their outputs."""
    parser = _parse("train.json", {
        "raw_dir": str(demo_cohort / "raw"), "dataset_dir": str(demo_cohort / "prepared"),
        "output_dir": str(tmp_path / "out"), "model_type": model_type, "image_size": SIZE,
        "g_channels": 4, "d_channels": 4, "gene_hidden": 16, "sample_every_n_epochs": 1,
        "train#dataloader#batch_size": 2, "train#trainer#max_epochs": 1, "train#trainer#epoch_length": 2,
    })
    parser.get_parsed_content("training")
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    losses = trainer.state.output[0]["loss"]
    expected = {"d_i", "d_is", "d_isg", "d_total", "g_i", "g_is", "g_isg", "g_background_l1", "g_total"}
    assert set(losses) == expected | ({"g_kl"} if model_type == "baseline" else set())
    assert all(np.isfinite(v) for v in losses.values())
    datalist = json.loads((demo_cohort / "prepared" / "datalist.json").read_text())
    assert datalist["image_size"] == SIZE and 0 < datalist["num_genes"] <= 40
    checkpoint = torch.load(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt", weights_only=True)
    assert set(checkpoint) == {"generator", "discriminator", "g_optimizer", "d_optimizer", "trainer"}
    assert (tmp_path / "out" / "samples" / "epoch_0001.png").stat().st_size > 1000


def test_pair_background_draws_reproducibly_from_paths_or_loaded_slices():
    from bundles.engines.radiogenomic import PairBackgroundd

    paths = [f"b{i}.nii.gz" for i in range(3)]
    loaded = [{"image": torch.full((1, 4, 4), float(i))} for i in range(3)]  # as a CacheDataset of them gives
    pair = PairBackgroundd(loaded).set_random_state(seed=3)
    drawn = [int(pair({"image": "x"})["background"][0, 0, 0]) for _ in range(30)]
    assert sorted(set(drawn)) == [0, 1, 2]
    again = PairBackgroundd(paths).set_random_state(seed=3)
    assert [paths.index(again({})["background"]) for _ in range(30)] == drawn
    with pytest.raises(ValueError, match="at least one"):
        PairBackgroundd([])
