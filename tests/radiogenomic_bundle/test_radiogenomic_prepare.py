"""Radiogenomic preparation: prepare.json's chains on a tiny demo cohort, and its bad-input paths."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import CASE_BY_NAME, prepare_case, tree_hash, user_error
from monai.data import MetaTensor
from scripts.demo_cohort import write_demo_cohort
from scripts.genes import GeneTable, read_gene_table
from scripts.prepare import (
    _gene_matrix,
    load_datalist,
    load_patient,
    model_inputs,
    standardise_genes,
)
from scripts.voi import CropVOI

from gan_core.errors import BundleInputError
from gan_core.transforms import ScaleHU, hu_from_scaled

RADIOGENOMIC = CASE_BY_NAME["radiogenomic"]

N_GENES = 200


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """5 demo patients (128 x 128 x 40 CT, 200 genes); R01-005's SEG removed."""
    raw = tmp_path_factory.mktemp("nsclc") / "raw"
    write_demo_cohort(raw, subjects=5, seed=0, n_genes=N_GENES, size=128)
    for seg_dir in raw.glob("R01-005/*/*Segmentation*"):
        shutil.rmtree(seg_dir)
    return raw


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory):
    """The dataset as ``python -m monai.bundle run preparation --config_file prepare.json`` writes it."""
    dataset = tmp_path_factory.mktemp("prepared") / "dataset"
    prepare_case(RADIOGENOMIC, cohort, dataset, image_size=128, backgrounds_per_patient=1, validation_fraction=0.25)
    return cohort, dataset, load_datalist(dataset)


def _patients(items):
    return {it["patient_id"] for it in items}


def _entry(raw, pid):
    """{"patient_id", "image", "seg"} of one demo patient (what nsclc_datalist gives)."""
    ct = next(p for p in raw.glob(f"{pid}/*/*") if "Segmentation" not in p.name and "PET" not in p.name)
    return {"patient_id": pid, "image": ct, "seg": next(raw.glob(f"{pid}/*/*Segmentation*/*.dcm"))}


@pytest.mark.slow
def test_datalist_layout_and_split(prepared):
    _, dataset, datalist = prepared
    stored = json.loads((dataset / "datalist.json").read_text())
    assert stored["gene_stats"] == "gene_stats.npz" and not Path(stored["training"][0]["image"]).is_absolute()
    assert stored["written_by"]["kind"] == "radiogenomic dataset" and stored["settings"]["image_size"] == 128
    assert not [p for p in dataset.parent.iterdir() if ".partial" in p.name]
    assert json.loads((dataset / "run_info.json").read_text())["datalist"]["sha256"]
    train, val = _patients(datalist["training"]), _patients(datalist["validation"])
    assert train | val == {"R01-001", "R01-002", "R01-003", "R01-004"}  # R01-005 has no SEG
    assert len(val) == 1 and not train & val
    assert datalist["image_size"] == 128
    for key in ("gene_names", "gene_stats"):
        assert Path(datalist[key]).is_absolute() and Path(datalist[key]).is_file()


@pytest.mark.slow
def test_nodule_slices_have_the_network_shape_range_and_geometry(prepared):
    raw, _, datalist = prepared
    items = datalist["training"] + datalist["validation"]
    assert len(items) >= 4 * 3
    for it in items:
        image, mask = nib.load(it["image"]), nib.load(it["mask"])
        assert Path(it["image"]).is_absolute()
        assert image.shape == (128, 128) and image.get_data_dtype() == np.float32
        hu = image.get_fdata()
        assert hu.min() >= -1000.0 and hu.max() <= 500.0
        scaled = ScaleHU()(hu)  # what the training chain feeds the network
        assert scaled.min() >= -1.0 and scaled.max() <= 1.0
        np.testing.assert_allclose(hu_from_scaled(scaled.numpy()), hu, atol=1e-3)
        assert mask.get_data_dtype() == np.uint8 and set(np.unique(mask.get_fdata())) <= {0.0, 1.0}
        assert mask.get_fdata().sum() > 0
        np.testing.assert_allclose(np.linalg.norm(image.affine[:3, :2], axis=0), 60.0 / 128)
        np.testing.assert_array_equal(image.affine, mask.affine)
    # the mask pixels land on the SEG's nodule voxels of the CT (nearest voxel), and the slice on the CT itself
    it = datalist["training"][len(datalist["training"]) // 2]
    patient = load_patient(_entry(raw, it["patient_id"]))
    mask = nib.load(it["mask"])
    pixels = np.argwhere(mask.get_fdata() > 0)
    world = mask.affine @ np.c_[pixels, np.zeros(len(pixels)), np.ones(len(pixels))].T
    voxel = np.rint(np.linalg.inv(np.asarray(patient["mask"].affine)) @ world)[:3].astype(int)
    assert patient["mask"][0].numpy()[tuple(voxel)].mean() > 0.9


@pytest.mark.slow
def test_genes_are_complete_standardised_and_match_the_table(prepared):
    raw, _, datalist = prepared
    names = Path(datalist["gene_names"]).read_text().split()
    table = read_gene_table(raw / "genes.tsv")
    assert datalist["num_genes"] == len(names) == N_GENES  # the demo's usable genes
    rows = table.values[[table.gene_names.index(g) for g in names]]
    na_genes = {g for g, r in zip(table.gene_names, table.values, strict=True) if np.isnan(r).any()}
    assert na_genes and not na_genes & set(names)  # the demo table has NA genes; none survives
    vectors = {it["patient_id"]: np.load(it["genes"]) for it in datalist["training"]}
    stacked = np.stack(list(vectors.values()))
    assert stacked.dtype == np.float32 and stacked.shape[1] == len(names) and np.isfinite(stacked).all()
    np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(stacked.std(axis=0), 1.0, atol=1e-4)
    # inference-time standardisation of the raw profiles reproduces the stored vectors
    pids = list(vectors)
    raw_profiles = rows[:, [table.patient_ids.index(p) for p in pids]]
    again = standardise_genes(raw_profiles, names, model_inputs(datalist), raw / "genes.tsv")
    np.testing.assert_allclose(again, stacked, atol=1e-5)


@pytest.mark.slow
def test_backgrounds_are_nodule_free_slices_of_the_right_size(prepared):
    raw, _, datalist = prepared
    backgrounds = datalist["backgrounds"]
    assert _patients(backgrounds) == {"R01-001", "R01-002", "R01-003", "R01-004"}
    validation = _patients(datalist["validation"])
    assert all((b["split"] == "validation") == (b["patient_id"] in validation) for b in backgrounds)
    assert all(sum(b["patient_id"] == p for b in backgrounds) == 20 for p in _patients(backgrounds))
    for pid in _patients(backgrounds):
        patient = load_patient(_entry(raw, pid))
        for center in {tuple(b["voi_center_mm"]) for b in backgrounds if b["patient_id"] == pid}:
            voi = CropVOI(image_size=128, mode="nearest", padding_value=0)(patient["mask"], center)
            assert voi.sum() == 0
    for b in backgrounds[::7]:
        image = nib.load(b["image"])
        assert image.shape == (128, 128)
        assert -1000.0 <= image.get_fdata().min() and image.get_fdata().max() <= 500.0


@pytest.mark.slow
def test_a_prepared_dataset_is_replaced_only_with_overwrite(prepared, tmp_path):
    raw, dataset, _ = prepared
    before = tree_hash(dataset)
    error = user_error(prepare_case, RADIOGENOMIC, raw, dataset, image_size=128)
    assert "earlier radiogenomic dataset" in str(error) and "--overwrite true" in str(error)
    assert tree_hash(dataset) == before
    # training asks for another size: refused with both values and the command that prepares again
    error = user_error(load_datalist, dataset, 64)
    assert "image_size=128" in str(error) and "image_size=64" in str(error) and "--overwrite true" in str(error)


@pytest.mark.slow
def test_gene_table_without_common_patients_is_refused(cohort, tmp_path):
    table = (cohort / "genes.tsv").read_text().split("\n", 1)
    header = "\t".join(f"X-{i:03d}" if i else cell for i, cell in enumerate(table[0].split("\t")))
    genes = tmp_path / "other.tsv"
    genes.write_text(header + "\n" + table[1])
    user_error(prepare_case, RADIOGENOMIC, cohort, tmp_path / "out", genes_path=str(genes))
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_na_and_constant_genes_are_dropped_and_all_na_is_refused():
    values = np.array(
        [[1.0, 2.0, 3.0, 0.0], [1.0, 1.0, 2.0, np.nan], [5.0, 5.0, 5.0, 1.0], [0.0, 4.0, 2.0, 1.0]]
    )
    table = GeneTable(["a", "b", "c", "no-image"], ["g1", "g2", "g3", "g4"], values)
    names, standardised, mean, std = _gene_matrix(table, ["a", "b", "c"], ["a", "b"], Path("genes.tsv"))
    assert names == ["g1", "g4"]
    np.testing.assert_allclose(mean, [1.5, 2.0])
    np.testing.assert_allclose(standardised[:, 0], [-1.0, 1.0, 3.0])
    all_na = GeneTable(["a", "b"], ["g1"], np.array([[np.nan, 1.0]]))
    with pytest.raises(BundleInputError, match="no gene"):
        _gene_matrix(all_na, ["a", "b"], ["a"], Path("genes.tsv"))


def test_standardise_genes_names_missing_and_na_genes():
    stats = {"gene_names": ["g1", "g2"], "gene_mean": [1.0, 2.0], "gene_std": [2.0, 4.0]}
    np.testing.assert_allclose(
        standardise_genes(np.array([[3.0], [0.0], [6.0]]), ["g1", "x", "g2"], stats, "t.tsv"), [[1.0, 1.0]]
    )
    with pytest.raises(BundleInputError, match="missing"):
        standardise_genes(np.array([[3.0]]), ["g1"], stats, "t.tsv")
    with pytest.raises(BundleInputError, match="NA"):
        standardise_genes(np.array([[3.0], [np.nan]]), ["g1", "g2"], stats, "t.tsv")


@pytest.mark.slow
def test_load_patient_mask_sits_on_the_ct_grid(cohort):
    patient = load_patient(_entry(cohort, "R01-001"))
    assert isinstance(patient["image"], MetaTensor) and patient["mask"].shape == patient["image"].shape
    assert patient["mask"].dtype == torch.uint8 and patient["mask"].sum() > 0
    torch.testing.assert_close(patient["mask"].affine, patient["image"].affine)
    assert patient["image"][patient["mask"] > 0].mean() > -700.0  # nodule tissue, not lung air
