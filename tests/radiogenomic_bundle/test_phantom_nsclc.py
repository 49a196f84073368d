"""The NSCLC demo cohort read back with pydicom / highdicom: geometry, tags, HU per region, SEG placement,
gene table, the two statements about the genes (raw k-means fails, a linear probe succeeds), and the "hard"
gene model (raw k-NN and k-means at chance at 131 patients, a linear probe still decodes the phenotype)."""

import csv
import hashlib

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scripts.demo_cohort import (
    PHENOTYPES,
    PRESET_SUBJECTS,
    cohort_design,
    gene_table_text,
    simulate_genes,
    size_quantiles,
    write_demo_cohort,
)
from scripts.gene_maps import code_scores
from scripts.genes import read_gene_table
from scripts.seg import read_seg
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gan_core.errors import BundleInputError
from gan_core.io.dicom_series import read_series
from gan_core.phantoms.chest import make_chest

SIZE, SLICES, GENES = 128, 40, 300


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_demo_cohort(tmp_path_factory.mktemp("nsclc") / "raw", subjects=3, seed=0, n_genes=GENES,
                              size=SIZE, slices=SLICES)


def _series(root, pid):
    ct = next(root.glob(f"{pid}/*/3.000000-*"))
    seg = next(root.glob(f"{pid}/*/1000.000000-*/*.dcm"))
    return ct, seg


def test_tree_tags_and_geometry(cohort):
    assert sorted(p.name for p in cohort.iterdir()) == ["R01-001", "R01-002", "R01-003", "demo_cohort.json", "genes.tsv",
                                                        "phenotypes.csv"]
    for pid in ("R01-001", "R01-002", "R01-003"):
        ct, seg_path = _series(cohort, pid)
        series = read_series(ct)
        assert series.volume.shape == (SIZE, SIZE, SLICES)
        spacing = 340.0 / SIZE
        np.testing.assert_allclose(np.diag(series.affine)[:3], [-spacing, -spacing, 2.5], rtol=1e-6)
        first = series.headers[0]
        assert first.Modality == "CT" and first.PatientID == pid and first.RescaleType == "HU"
        assert float(first.RescaleSlope) == 1 and float(first.RescaleIntercept) == -1024
        assert float(first.SliceThickness) == 2.5 and [float(v) for v in first.ImageOrientationPatient] == [
            1, 0, 0, 0, 1, 0]
        seg = hd.seg.segread(seg_path)
        assert seg.Modality == "SEG" and seg.StudyInstanceUID == first.StudyInstanceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
        assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
        assert seg.get_segment_numbers() == [1] and seg.SeriesInstanceUID != first.SeriesInstanceUID


def test_hu_per_region_and_nodule_placement(cohort):
    rows = {r["patient_id"]: r for r in csv.DictReader(open(cohort / "phenotypes.csv"))}
    assert {r["phenotype"] for r in rows.values()} == set(PHENOTYPES)
    for index, pid in enumerate(sorted(rows), start=1):
        ct, seg_path = _series(cohort, pid)
        series = read_series(ct)
        # The anatomy is the first draw of the patient's generator: regenerate the truth labels.
        chest = make_chest(np.random.default_rng([0, 1, index]), (SIZE, SIZE, SLICES), (340 / SIZE, 340 / SIZE, 2.5))
        np.testing.assert_allclose(chest.affine, series.affine, atol=1e-4)
        mask = read_seg(seg_path, series).astype(bool)
        hu = series.volume
        assert np.median(hu[chest.labels == 0]) == pytest.approx(-1000, abs=30)
        assert np.median(hu[(chest.labels == 100) & ~mask]) == pytest.approx(-850, abs=60)
        assert 0 < np.median(hu[chest.labels == 150]) < 90
        assert np.median(hu[chest.labels == 200]) > 200
        # The SEG covers the nodule: inside the lungs, of the stated size, with the stated mean HU.
        assert mask.any() and chest.lungs[mask].min() > 0
        assert float(rows[pid]["mean_hu"]) == pytest.approx(hu[mask].mean(), abs=0.06)
        voxel_mm3 = abs(np.linalg.det(series.affine[:3, :3]))
        equivalent_mm = (6 * mask.sum() * voxel_mm3 / np.pi) ** (1 / 3)
        assert 0.6 < equivalent_mm / float(rows[pid]["diameter_mm"]) < 1.8
        assert 8 <= float(rows[pid]["diameter_mm"]) <= 30
        if rows[pid]["phenotype"] == "part_solid_ggo":
            assert hu[mask].mean() < -300
        else:
            assert hu[mask].mean() > -250
        assert hu[mask].mean() > np.median(hu[chest.labels == 100]) + 150  # denser than the lung around it


def test_gene_table_shape_and_na(cohort):
    table = read_gene_table(cohort / "genes.tsv")
    assert table.patient_ids == ["R01-001", "R01-002", "R01-003"]
    assert table.values.shape[0] > GENES and np.isnan(table.values).any()
    complete = table.complete_genes()
    assert len(complete.gene_names) == GENES and not np.isnan(complete.values).any()


def test_gene_patients_missing_in_a_larger_design():
    ids, _, _, _, no_genes = cohort_design(24, 0)
    assert len(ids) == 24 and len(no_genes) == 2


def _scores(phenotype, values):
    x = values[~np.isnan(values).any(axis=1)].T
    ari = adjusted_rand_score(phenotype, KMeans(3, n_init=10, random_state=0).fit_predict(
        StandardScaler().fit_transform(x)))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(probe, x, phenotype, cv=StratifiedKFold(4, shuffle=True, random_state=0)).mean()
    return ari, accuracy


@pytest.mark.parametrize("seed", [0, 1])
def test_raw_gene_clusters_miss_the_phenotype_but_a_linear_probe_finds_it(seed):
    rng = np.random.default_rng(seed)
    phenotype = rng.permutation(np.arange(60) % 3)
    _, values = simulate_genes(phenotype, rng.integers(0, 2, 60), rng.integers(0, 2, 60), GENES, rng)
    ari, accuracy = _scores(phenotype, values)
    assert ari < 0.2 and accuracy > 0.8


@pytest.mark.slow  # k-means and a 4-fold probe on 22 x 5172 genes: about 10 s
def test_default_cohort_gene_statements():
    """The genes of the default demo cohort (24 patients, 5172 genes), generated exactly as the writer does."""
    _, phenotype, sex, batch, no_genes = cohort_design(24, 0)
    keep = [i for i in range(24) if i not in no_genes]
    _, values = simulate_genes(phenotype[keep], sex[keep], batch[keep], 5172, np.random.default_rng([0, 2]))
    ari, accuracy = _scores(phenotype[keep], values)
    assert ari < 0.2 and accuracy > 0.8


def test_deterministic_whatever_the_workers_and_refuses_existing_folder(tmp_path):
    a = write_demo_cohort(tmp_path / "a", subjects=2, seed=3, n_genes=20, size=64, workers=1)
    b = write_demo_cohort(tmp_path / "b", subjects=2, seed=3, n_genes=20, size=64, workers=2)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert pydicom.dcmread(next(a.glob("R01-001/*/3.*/1-001.dcm"))).PatientID == "R01-001"
    with pytest.raises(BundleInputError) as err:
        write_demo_cohort(a, subjects=1)
    assert err.value.path == str(a)


# sha256 of the default model's gene table for the fixed input below, taken before the gene-model presets existed.
DEFAULT_GENES_SHA256 = "1ed731db8a371bfa40e915c5ec98dafd7a64da31d5a7a630739cddbd570e1a8f"


@pytest.mark.parametrize("explicit", [False, True])
def test_default_gene_model_unchanged(explicit):
    """The default demo's genes are byte for byte those written before the "hard" preset was added."""
    phenotype, sex, batch = np.arange(12) % 3, np.array([0, 1] * 6), np.array([0, 0, 1] * 4)
    extra = {"gene_model": "default"} if explicit else {}
    names, values = simulate_genes(phenotype, sex, batch, 40, np.random.default_rng(11), **extra)
    text = gene_table_text([f"P{i}" for i in range(12)], names, values)
    assert hashlib.sha256(text.encode()).hexdigest() == DEFAULT_GENES_SHA256


def test_unknown_gene_model_is_refused(tmp_path):
    with pytest.raises(BundleInputError) as err:
        simulate_genes(np.arange(3), np.zeros(3), np.zeros(3), 10, np.random.default_rng(0), gene_model="easy")
    assert err.value.field == "gene_model" and "hard" in err.value.hint
    with pytest.raises(BundleInputError):
        write_demo_cohort(tmp_path / "c", subjects=1, gene_model="easy")
    assert not any(tmp_path.iterdir())


def _standardised(values):
    """Genes as the radiogenomic preparation keeps them (no NA, not constant), z-scored over the patients:
    (patients, genes)."""
    x = values[~np.isnan(values).any(axis=1)]
    mean, std = x.mean(axis=1), x.std(axis=1)
    keep = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    return ((x[keep] - mean[keep, None]) / std[keep, None]).T


@pytest.fixture(scope="module")
def hard_genes():
    """The hard preset's genes exactly as ``write_demo_cohort(out, gene_model="hard")`` draws them (seed 0)."""
    subjects = PRESET_SUBJECTS["hard"]
    _, phenotype, sex, batch, no_genes = cohort_design(subjects, 0)
    keep = [i for i in range(subjects) if i not in no_genes]
    size = size_quantiles(subjects, 0)[keep]
    _, values = simulate_genes(phenotype[keep], sex[keep], batch[keep], 5172, np.random.default_rng([0, 2]), "hard",
                               size=size)
    return _standardised(values), phenotype[keep], size


def test_hard_raw_genes_do_not_separate_the_phenotypes(hard_genes):
    """k-NN (k = 5, 5-fold) and k-means (k = 3) of the radiogenomic evaluation, over 20 CV shuffles: chance."""
    x, phenotype, _ = hard_genes
    assert x.shape == (131, 5172) and np.bincount(phenotype).min() >= 40
    scores = [code_scores(x, phenotype, 3, seed=seed) for seed in range(20)]
    assert np.mean([s["knn_accuracy"] for s in scores]) <= 0.40
    assert abs(np.mean([s["ari"] for s in scores])) <= 0.05


def test_hard_linear_probe_decodes_the_phenotype(hard_genes):
    """L2 logistic regression (C = 1), 5-fold, averaged over 10 shuffles.

    Its weights lie in the span of the training profiles, so fitting on the profiles' coordinates in the span
    of all 131 (``x = u s v^T``, coordinates ``u s``: a rotation) solves the same problem, about 6x faster.
    """
    x, phenotype, _ = hard_genes
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    accuracy = [cross_val_score(LogisticRegression(max_iter=2000), u * s, phenotype,
                                cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean() for seed in range(10)]
    assert np.mean(accuracy) >= 0.9


def test_hard_genes_carry_the_nodule_size(hard_genes):
    """The hard model's size programme: a ridge regression on the genes (5-fold) predicts each patient's nodule size
    quantile, so a radiogenomic map can generalise the diameter to new patients (the default model's genes carry
    the size only through the phenotype)."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    x, _, size = hard_genes
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 4, 13)), u * s, size,
                                  cv=KFold(5, shuffle=True, random_state=0))
    assert spearmanr(predicted, size)[0] >= 0.8
    with pytest.raises(ValueError, match="size quantiles"):
        simulate_genes(np.arange(3), np.zeros(3), np.zeros(3), 10, np.random.default_rng(0), gene_model="hard")
