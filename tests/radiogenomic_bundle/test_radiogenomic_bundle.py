"""radiogenomic_bundle end to end on tiny data: training from the config, inference geometry and errors, evaluation."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import CASE_BY_NAME, prepare_case, run_workflow, tree_hash, user_error
from scripts.networks import RadiogenomicDiscriminator
from scripts.utility import (
    mean_nodule_area,
    nodule_overlap,
    paste_real_nodules,
    shrunken_nodules,
)

from gan_core.errors import BundleInputError
from gan_core.figures import plt
from gan_core.fileio import atomic_torch_save, written_by
from gan_core.models import Model, read_model

RADIOGENOMIC = CASE_BY_NAME["radiogenomic"]

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
    return {"builder": "scripts.networks.build_generator", "model_type": model_type,
            "image_fusion": True, "num_genes": GENES, "image_size": SIZE, "base_channels": 4, "code_dim": 128,
            "noise_dim": 10, "hidden": 16}


def _inputs() -> dict:
    return {"gene_names": [f"GENE{j}" for j in range(GENES)], "gene_mean": [0.0] * GENES,
            "gene_std": [1.0] * GENES, "image_size": SIZE}


def _write_checkpoint(path: Path, model_type: str) -> Path:
    """A training checkpoint with an untrained generator and its network record."""
    from gan_core.models import build_network

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
    from scripts.inference import synthesise

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


class PasteGenerator(torch.nn.Module):
    """Pastes a disk whose radius and HU are set by the genes (gene 0: radius in px, gene 1: HU / 100) and whose
    position is set by the noise; its gene code is the raw profile."""

    noise_dim = 2

    def forward(self, background, genes, noise):
        size = background.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        centre = size // 2 + torch.round(noise.clamp(-1, 1) * 2)
        d2 = (yy[None] - centre[:, :1, None]) ** 2 + (xx[None] - centre[:, 1:, None]) ** 2
        disk = d2 <= (genes[:, :1, None] + 4.0).clamp_min(1.0) ** 2
        value = ((genes[:, 1:2, None] * 100.0 + 1000.0) / 750.0 - 1.0).clamp(-1, 1)
        image = torch.where(disk[:, None], value[:, None].expand_as(background), background)
        return image, disk[:, None].float() * 2 - 1

    def encode_genes(self, genes):
        return genes


def _wrapped(generator) -> Model:
    model = Model(Path("handmade.pt"), {}, {}, {})
    model.load = lambda device="cpu", network=None: generator
    return model


FAST = {"num_backgrounds": 4, "num_noise": 2, "cv_shuffles": 5, "null_permutations": 5, "radiomics_per_cluster": 1,
        "metrics": ["kid", "precision", "memorisation_pixel"], "num_bootstrap": 20}


@pytest.mark.slow
def test_evaluation_of_an_identity_generator_has_known_numbers(tiny, tmp_path):
    from scripts.evaluation import evaluate
    from test_radiogan_workflows import fake_utility, orange_pixels

    metrics = evaluate(_wrapped(IdentityGenerator()), tiny["dataset"], tmp_path / "evaluation",
                       truth_csv=tiny["raw"] / "phenotypes.csv", utility_dir=fake_utility(tmp_path / "utility"), **FAST)
    proposed = metrics["models"]["proposed"]
    for region in ("whole_slice", "background_region"):
        assert proposed["table1"][region]["mse"] == 0 and proposed["table1"][region]["psnr"] == 100.0
        assert proposed["table1"][region]["ssim"] == pytest.approx(1.0)
        assert proposed["table1"][region]["num_images"] == 4 * 9 * 2
    # a perfect Table 1 and no nodule at all: the nodule fraction and the two-sample test say so
    assert proposed["nodules"]["value"] == 0.0 and proposed["realism"]["nodule_patches"]["auc"] > 0.9
    codes = metrics["gene_codes"]
    assert codes["proposed code"] == codes["raw genes"]  # identical representation, identical scores
    assert "baseline code" not in codes and list(metrics["models"]) == ["proposed"]
    comparison = metrics["code_comparisons"]["proposed code - raw genes"]["all"]
    assert comparison["difference"] == 0.0 and comparison["ci95"] == [0.0, 0.0]
    assert codes["raw genes"]["knn"]["shuffles"] == 5 and 0 < codes["raw genes"]["null"]["knn"]["p_value"] <= 1
    assert proposed["controllability"]["chance"] == pytest.approx(1 / 3)
    assert proposed["controllability"]["all"]["accuracy"] == 0.0  # no nodule is never the requested phenotype
    assert metrics["judge"]["lopo_accuracy"] >= 2 / 3  # radius and HU tell the tiny phenotypes apart
    assert proposed["swaps"]["area_px"]["gene_swap"] == 0.0  # nothing drawn, nothing changes
    rows = metrics["radiogenomic_map"]
    assert sum(r["num_subjects"] for r in rows) == 9
    assert all(8 < r["diameter_mm"] < 28 for r in rows)  # radius 3-7 px of 1.875 mm
    assert all(np.isnan(r["generated_diameter_mm"]) for r in rows)  # the identity draws no nodule
    assert set(metrics["metrics"]) == {"kid", "precision", "memorisation_pixel"}
    # the shared metrics judge outputs for held-out inputs only: held-out profiles x held-out backgrounds x noise
    heldout = metrics["num_heldout_patients"]
    generated = metrics["metrics"]["memorisation_pixel"]["n"]["generated"]
    backgrounds = generated // (heldout * 2)
    assert 0 < heldout < 9 and generated == heldout * backgrounds * 2 and 1 <= backgrounds <= 4
    assert (f"the {heldout} held-out patients' gene profiles on {backgrounds} of their"
            in metrics["shared_metric_sets"]["generated"])
    assert metrics["targets"]["holds"]["background_ssim"] and not metrics["targets"]["holds"]["nodule_fraction"]
    written = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert written["metrics"]["kid"]["value"] == pytest.approx(metrics["metrics"]["kid"]["value"])
    for name in ("metrics.json", "radiogenomic_map.csv", "radiogenomic_map.png", "gene_code_tsne.png", "synthesis.png",
                 "follows_genes.png"):
        assert (tmp_path / "evaluation" / name).stat().st_size > 100
    summary = plt.imread(tmp_path / "evaluation" / "summary.png")
    assert summary.ndim == 3 and summary.shape[0] > 600 and summary[..., :3].std() > 0.05
    assert orange_pixels(tmp_path / "evaluation" / "summary.png") > 30  # the utility curve (one model: no orange dots)


def test_evaluation_without_heldout_patients_is_one_error_naming_the_datalist(tiny, tmp_path):
    """The shared metrics judge outputs for held-out inputs: a dataset without held-out patients is refused
    before anything is written, and the dataset is left as it was."""
    import shutil

    from scripts.evaluation import evaluate

    dataset = tmp_path / "dataset"
    shutil.copytree(tiny["dataset"], dataset)
    datalist = json.loads((dataset / "datalist.json").read_text())
    datalist["training"] += datalist["validation"]
    datalist["validation"] = []
    (dataset / "datalist.json").write_text(json.dumps(datalist))
    before = tree_hash(dataset)
    with pytest.raises(BundleInputError) as err:
        evaluate(_wrapped(IdentityGenerator()), dataset, tmp_path / "evaluation",
                 truth_csv=tiny["raw"] / "phenotypes.csv", **FAST)
    assert err.value.field == "validation" and "0 held-out patient(s)" in str(err.value)
    assert str(dataset / "datalist.json") in str(err.value)
    assert not (tmp_path / "evaluation").exists() and tree_hash(dataset) == before


@pytest.mark.slow
def test_evaluation_of_a_generator_that_follows_its_genes(tmp_path):
    """Disks whose radius and HU come from the genes: Spearman 1 against the tiny cohort's real nodules, gene swaps
    change the nodule, noise swaps move it but keep its size, and every output holds a nodule."""
    from scripts.evaluation import evaluate

    raw, dataset = write_tiny_prepared(tmp_path)
    datalist = json.loads((dataset / "datalist.json").read_text())
    phenotype = {f"R01-{c}{k:02d}": (radius, hu) for c, (radius, hu) in enumerate(PHENOTYPES.values()) for k in range(3)}
    patients = list(dict.fromkeys(e["patient_id"] for e in datalist["training"] + datalist["validation"]))
    rng = np.random.default_rng(1)
    for pid in patients:  # genes that encode the patient's radius (minus 4 px) and HU / 100, plus noise
        radius, hu = phenotype[pid]
        np.save(dataset / "genes" / f"{pid}.npy",
                np.r_[radius - 4.0 + 0.1 * rng.standard_normal(), hu / 100.0, 0.1 * rng.standard_normal(GENES - 2)]
                .astype(np.float32))
    metrics = evaluate(_wrapped(PasteGenerator()), dataset, tmp_path / "evaluation", truth_csv=raw / "phenotypes.csv",
                       **FAST)
    proposed = metrics["models"]["proposed"]
    assert proposed["nodules"]["value"] == 1.0
    follows = proposed["follows_genes"]
    assert follows["diameter_mm"]["all"]["rho"] > 0.8 and follows["mean_hu"]["all"]["rho"] > 0.8
    swaps = proposed["swaps"]
    assert swaps["area_px"]["noise_swap"] == 0.0 and swaps["area_px"]["gene_swap"] > 50  # noise moves, not resizes
    assert swaps["mean_hu"]["same_over_cross"] < 0.1  # same phenotype, same HU
    assert metrics["gene_codes"]["proposed code"]["label_silhouette"] > 0.5  # genes 0-1 carry radius and HU


@pytest.mark.slow
def test_evaluation_config_with_both_models(tiny, tmp_path):
    run_workflow(RADIOGENOMIC, "evaluation", "evaluate.json", dataset_dir=str(tiny["dataset"]),
                 output_dir=str(tmp_path), truth_csv=str(tiny["raw"] / "phenotypes.csv"),
                 proposed_ckpt=str(tiny["proposed"]), baseline_ckpt=str(tiny["baseline"]), num_backgrounds=2,
                 num_noise=2, cv_shuffles=5, null_permutations=5, radiomics_per_cluster=0,
                 metrics=["kid", "memorisation_features"], num_bootstrap=20)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert sorted(metrics["models"]) == ["baseline", "proposed"]
    assert set(metrics["gene_codes"]) == {"raw genes", "baseline code", "proposed code"}
    assert set(metrics["code_comparisons"]) == {"proposed code - raw genes", "proposed code - baseline code"}
    assert set(metrics["models"]["baseline"]["controllability"]) >= {"all", "training", "heldout", "chance"}
    assert 0 <= metrics["models"]["baseline"]["table1"]["whole_slice"]["ssim"] <= 1
    assert set(metrics["metrics"]) == {"kid", "memorisation_features"}


@pytest.mark.slow
def test_evaluation_without_truth_skips_the_phenotype_measures_with_a_note(tiny, tmp_path):
    from scripts.evaluation import evaluate

    metrics = evaluate(_wrapped(IdentityGenerator()), tiny["dataset"], tmp_path / "evaluation", truth_csv=None,
                       **{**FAST, "radiomics_per_cluster": 0})
    assert any("truth_csv" in note for note in metrics["notes"])
    assert "knn" not in metrics["gene_codes"]["raw genes"] and "judge" not in metrics
    assert "controllability" not in metrics["models"]["proposed"] and metrics["code_comparisons"] == {}
    assert "same_over_cross" not in metrics["models"]["proposed"]["swaps"]["mean_hu"]


@pytest.fixture(scope="module")
def demo_prepared(tmp_path_factory):
    """A 4-patient demo cohort (40 genes, 128 x 128 CT) prepared at 32 px by the preparation config."""
    from scripts.demo_cohort import write_demo_cohort

    root = tmp_path_factory.mktemp("radiogenomic_demo")
    write_demo_cohort(root / "raw", subjects=4, seed=0, n_genes=40, size=128, workers=1)
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
    expected = {"d_i", "d_is", "d_isg", "d_n", "d_total", "g_i", "g_is", "g_isg", "g_n", "g_background_l1", "g_total",
                "g_appearance", "g_consistency_size", "g_consistency_density", "g_consistency_spread",
                "g_consistency_boundary", "g_consistency_interior"}
    assert set(losses) == expected | ({"g_kl"} if model_type == "baseline" else set())
    assert all(np.isfinite(v) for v in losses.values())
    assert tree_hash(demo_prepared) == before
    checkpoint = torch.load(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt", weights_only=True)
    assert set(checkpoint) == {"network", "generator", "generator_ema", "discriminator", "g_optimizer", "d_optimizer",
                               "trainer"}
    record = read_model(tmp_path / "out" / "checkpoints" / "checkpoint_latest.pt")
    assert record.network["model_type"] == model_type and record.network["image_size"] == 32
    assert record.network["code_dim"] == 7 and record.network["code_gradient"] == 0.1  # the appearance objective
    assert not any(k.startswith("gene_encoder") for k in checkpoint["discriminator"])  # D reads G's code
    assert len(record.inputs["gene_names"]) == record.network["num_genes"] == len(record.inputs["gene_mean"])
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["datalist"]["sha256"] and info["seed"] == 0 and info["packages"]["monai"]
    assert info["torch_threads"] == torch.get_num_threads()  # results of a seed depend on it
    grid = plt.imread(tmp_path / "out" / "samples" / "epoch_0001.png")
    assert grid.ndim == 3 and grid.std() > 0.05


def test_pair_background_draws_reproducibly_from_paths_or_loaded_slices():
    from scripts.sampling import PairBackgroundd

    paths = [f"b{i}.nii.gz" for i in range(3)]
    loaded = [{"image": torch.full((1, 4, 4), float(i))} for i in range(3)]  # as a CacheDataset of them gives
    pair = PairBackgroundd(loaded).set_random_state(seed=3)
    drawn = [int(pair({"image": "x"})["background"][0, 0, 0]) for _ in range(30)]
    assert sorted(set(drawn)) == [0, 1, 2]
    again = PairBackgroundd(paths).set_random_state(seed=3)
    assert [paths.index(again({})["background"]) for _ in range(30)] == drawn
    with pytest.raises(ValueError, match="at least one"):
        PairBackgroundd([])


def test_nodule_overlap_tells_under_segmentation_from_a_match():
    ref = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    ref[0, 0, 2:6, 2:6] = 1  # 16 px
    ref[1, 0, 0:2, 0:2] = 1  # 4 px
    assert nodule_overlap(ref, ref) == {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    small = torch.zeros_like(ref)
    small[0, 0, 3:5, 3:5] = 1  # 4 of the 20 reference pixels, all inside
    assert nodule_overlap(small, ref) == {"dice": 2 * 4 / 24, "precision": 1.0, "recall": 0.2}
    assert nodule_overlap(torch.zeros_like(ref), torch.zeros_like(ref))["dice"] == 1.0
    assert np.isnan(nodule_overlap(torch.zeros_like(ref), ref)["precision"])
    assert mean_nodule_area(ref) == 10.0 and np.isnan(mean_nodule_area(ref[:0]))


def test_a_gan_whose_nodules_shrank_to_under_half_its_subsets_is_named():
    # seed 6 of the shipped study: 85 px against 371 px; a working GAN: 301 px against 411 px
    warning = shrunken_nodules({"train_real": 371.0, "train_synthetic": 85.0, "test": 380.0})
    assert "85 px, 0.23 of the real subset's 371 px" in warning and "collapsed" in warning
    assert shrunken_nodules({"train_real": 411.0, "train_synthetic": 301.0, "test": 370.0}) is None
    assert shrunken_nodules({"train_real": 100.0, "train_synthetic": 50.0, "test": 1.0}) is None  # at the bound
    assert shrunken_nodules({"train_real": float("nan"), "train_synthetic": 1.0, "test": 1.0}) is None


def test_copy_paste_null_pastes_the_nodule_pixels_with_their_mask():
    images = torch.stack([torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), 0.9)])
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    masks[0, 0, 2:4, 2:4] = 1
    masks[1, 0, 3:6, 3:6] = 1
    backgrounds = torch.full((3, 1, 8, 8), -0.8)
    pasted, pasted_masks = paste_real_nodules(images, masks, backgrounds, count=20, seed=0)
    assert pasted.shape == (20, 1, 8, 8) and pasted_masks.dtype == torch.long
    for x, m in zip(pasted, pasted_masks, strict=True):
        nodule = x[m == 1]
        assert m.sum() in (4, 9) and bool((x[m == 0] == -0.8).all())  # a real mask; background elsewhere
        assert bool((nodule == (0.5 if m.sum() == 4 else 0.9)).all())  # the nodule's own pixels inside its mask
    assert {int(m.sum()) for m in pasted_masks} == {4, 9}  # both nodules drawn
    again = paste_real_nodules(images, masks, backgrounds, count=20, seed=0)
    assert torch.equal(again[0], pasted)  # a fixed function of the seed


@pytest.mark.slow
def test_utility_study_trains_a_gan_per_seed_on_the_subset_and_scores_four_arms(demo_prepared, tmp_path):
    before = tree_hash(demo_prepared)
    gan = {"network#base_channels": 4, "d_channels": 4, "network#hidden": 16, "train#dataloader#batch_size": 2}
    run_workflow(RADIOGENOMIC, "utility", "utility.json", dataset_dir=str(demo_prepared), output_dir=str(tmp_path),
                 sizes=[1], seeds=[0, 1], gan_iterations=2, gan_settings=gan, synthetic_per_patient=3, seg_steps=2,
                 seg_batch_size=2, seg_repeats=2)
    assert tree_hash(demo_prepared) == before
    result = json.loads((tmp_path / "utility" / "utility.json").read_text())
    assert {(r["seed"], r["arm"]) for r in result["runs"]} == {(s, a) for s in (0, 1)
                                                               for a in ("real", "real+synthetic", "synthetic",
                                                                         "real+null")}
    null_runs = [r for r in result["runs"] if r["arm"] == "real+null"]  # copy-paste: as many as the synthetic set
    assert all(r["train_synthetic"] == next(s["train_synthetic"] for s in result["runs"] if s["arm"] == "synthetic"
                                            and s["seed"] == r["seed"]) for r in null_runs)
    assert all(0.0 <= r["value"] <= 1.0 and r["steps"] == 2 for r in result["runs"])
    assert all(len(r["repeat_dice"]) == 2 and r["value"] == pytest.approx(np.mean(r["repeat_dice"]))
               for r in result["runs"])  # the arm's value is the mean over its networks
    assert all(set(g["nodule_area_px"]) == {"train_real", "train_synthetic", "test"} and g["nodule_area_px"]["test"] > 0
               for g in result["gans"])
    assert all(g.get("warning") == shrunken_nodules(g["nodule_area_px"]) for g in result["gans"])  # a collapse named
    real_runs = [r for r in result["runs"] if r["arm"] == "real"]
    assert all(len(r["patients"]) == 1 and r["train_synthetic"] == 0 for r in real_runs)
    assert {g["seed"] for g in result["gans"]} == {0, 1}
    for g in result["gans"]:  # each GAN trained on its subset's items only
        record = torch.load(tmp_path / "utility" / g["checkpoint"], weights_only=True)
        assert record["trainer"]["iteration"] == 2
    assert set(result["summary"]["1"]) >= {"real", "real+synthetic", "synthetic", "real+null", "gain", "tstr_ratio",
                                           "gain_null", "gain_over_null"}
    png = plt.imread(tmp_path / "utility" / "utility.png")
    assert png.ndim == 3 and png[..., :3].std() > 0.05
    patients = len({e["patient_id"] for e in json.loads((demo_prepared / "datalist.json").read_text())["training"]})
    error = user_error(run_workflow, RADIOGENOMIC, "utility", "utility.json", dataset_dir=str(demo_prepared),
                       output_dir=str(tmp_path / "out2"), sizes=[patients], seeds=[0, 1])
    assert error.field == "sizes" and not (tmp_path / "out2").exists()  # refused before anything is written
