"""The radiogenomic evaluation's statistics and nodule measurements on inputs with known answers."""

import math

import numpy as np
import pytest
import torch
from scripts.nodules import (
    DESCRIPTORS,
    contains_nodule,
    crop_patches,
    nodule_contrast,
    nodule_descriptors,
)
from scripts.stats import (
    binary_auc,
    descriptor_judge,
    knn_cv,
    knn_transfer,
    label_null,
    label_silhouette,
    paired_bootstrap,
    spearman_ci,
    stratified_folds,
    swap_sensitivity,
    two_sample_auc,
)
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

LABELS = np.repeat(["a", "b", "c"], 8)


def _clustered(seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = {"a": [5.0, 0.0], "b": [0.0, 5.0], "c": [-5.0, -5.0]}
    return np.array([centres[p] for p in LABELS]) + rng.normal(0, spread, (LABELS.size, 2))


def test_knn_cv_separates_clusters_from_noise_and_matches_scikit_learn():
    good = knn_cv(_clustered(), LABELS, shuffles=20)
    assert good["mean"] == 1.0 and good["min"] == 1.0 and set(good["per_patient"]) == {1.0}
    assert good["folds"] == 5 and good["k"] == 5 and len(good["per_shuffle"]) == 20
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(LABELS.size, 6))
    # the same folds through scikit-learn's k-NN give the same predictions (vote and tie rules agree)
    folds = stratified_folds(np.unique(LABELS, return_inverse=True)[1], 5, np.random.default_rng(7))
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)]
    expected = cross_val_predict(KNeighborsClassifier(5), noise, LABELS, cv=splits)
    ours = knn_cv(noise, LABELS, shuffles=1, seed=0)  # different folds: compare through a fixed one below
    assert 0.0 <= ours["mean"] <= 1.0
    from scripts.stats import _distances, _knn_predict

    codes = np.unique(LABELS, return_inverse=True)[1]
    predicted = _knn_predict(_distances(noise), folds[:, None] != folds[None, :], codes, 5, 3)
    assert (np.unique(LABELS)[predicted] == expected).all()
    assert knn_cv(noise, LABELS, shuffles=100)["mean"] < 0.6


def test_stratified_folds_balance_every_class():
    codes = np.repeat([0, 1, 2], [8, 5, 11])
    folds = stratified_folds(codes, 5, np.random.default_rng(0))
    for c, n in ((0, 8), (1, 5), (2, 11)):
        counts = np.bincount(folds[codes == c], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_knn_transfer_classifies_by_the_nearest_training_patients():
    train = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    labels = ["a", "a", "a", "b", "b", "b"]
    result = knn_transfer(train, labels, np.array([[1.0], [9.0]]), ["a", "a"], k=3)
    assert result["per_patient"] == [1.0, 0.0] and result["accuracy"] == 0.5


def test_label_null_is_chance_for_noise_and_rejects_it_for_clusters():
    clustered = _clustered()
    observed = {"knn": 1.0, "silhouette": label_silhouette(clustered, LABELS)}
    null = label_null(clustered, LABELS, observed, permutations=40, shuffles=3)
    assert null["knn"]["p_value"] == pytest.approx(1 / 41)  # no permutation reaches the observed 1.0
    assert 0.15 < null["knn"]["mean"] < 0.55 and null["knn"]["p95"] < 0.75  # chance is 1/3
    assert observed["silhouette"] > 0.8 and null["silhouette"]["p95"] < 0.2


def test_paired_bootstrap_known_differences():
    same = paired_bootstrap([0, 0, 0, 0], [1, 1, 1, 1])
    assert same["difference"] == 1.0 and same["ci95"] == [1.0, 1.0] and same["n"] == 4
    mixed = paired_bootstrap([0.0, 1.0, 0.5, np.nan], [1.0, 0.0, 0.5, 1.0], seed=3)
    assert mixed["difference"] == 0.0 and mixed["n"] == 3  # the NaN pair is left out
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]


def test_spearman_ci_of_a_monotone_relation():
    x = np.arange(1.0, 11.0)
    result = spearman_ci(x, x**2 + 3)
    assert result["rho"] == pytest.approx(1.0) and result["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert spearman_ci(x, -x)["rho"] == pytest.approx(-1.0)
    assert math.isnan(spearman_ci([1.0, 2.0], [3.0, 4.0])["rho"])


def test_swap_sensitivity_by_hand():
    # K = 1 background, P = 3 profiles, N = 2 noise draws; profile p, noise n -> 10 p + 2 n, profiles 0 and 1 alike
    values = np.array([[[0.0, 2.0], [10.0, 12.0], [40.0, 42.0]]])
    result = swap_sensitivity(values, ["x", "x", "y"], real_values=[1.0, 3.0, 11.0])
    assert result["noise_swap"] == pytest.approx(2.0)
    assert result["gene_swap"] == pytest.approx((10 + 40 + 30) / 3)  # pairs (0,1), (0,2), (1,2)
    assert result["noise_over_gene"] == pytest.approx(2.0 / (80 / 3))
    assert result["same_phenotype_swap"] == pytest.approx(10.0)
    assert result["cross_phenotype_swap"] == pytest.approx(35.0)
    assert result["same_over_cross"] == pytest.approx(10 / 35)
    assert result["real_same_over_cross"] == pytest.approx(2.0 / 9.0)  # |1 - 3| vs (|1 - 11| + |3 - 11|) / 2
    nan_free = swap_sensitivity(np.where(values > 41, np.nan, values))  # a NaN output is left out of its pairs
    assert nan_free["noise_swap"] == pytest.approx(2.0)


def test_binary_auc_is_sklearn_s_roc_auc_also_with_ties_and_repeated_samples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = [0, 1]
        scores = np.round(rng.normal(y * 0.7, 1.0), 1)  # rounded: many ties
        idx = rng.integers(0, 60, 60)  # a bootstrap resample repeats samples
        assert binary_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        if 0 < y[idx].sum() < 60:
            assert binary_auc(y[idx], scores[idx]) == pytest.approx(roc_auc_score(y[idx], scores[idx]), abs=1e-12)
    assert binary_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0 and binary_auc([0, 1], [1.0, 1.0]) == 0.5
    with pytest.raises(ValueError, match="both labels"):
        binary_auc([1, 1], [0.1, 0.2])


def test_two_sample_auc_is_half_for_one_distribution_and_one_for_two():
    rng = np.random.default_rng(0)
    same = two_sample_auc(rng.normal(size=(200, 5)), rng.normal(size=(300, 5)), num_resamples=200)
    assert abs(same["auc"] - 0.5) < 0.1 and same["n_real"] == same["n_generated"] == 200
    apart = two_sample_auc(rng.normal(size=(100, 5)), rng.normal(3.0, 1.0, size=(100, 5)), num_resamples=200)
    assert apart["auc"] > 0.99 and apart["ci95"][0] > 0.97


def test_descriptor_judge_leaves_each_patient_out():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 3)
    labels = np.array(["ggo", "solid", "spiculated"])[groups % 3]
    centre = {"ggo": [-500.0, 0.9], "solid": [-150.0, 0.95], "spiculated": [-140.0, 0.6]}
    x = np.array([centre[label] for label in labels]) + rng.normal(0, [20.0, 0.02], (labels.size, 2))
    judge = descriptor_judge(x, labels, groups)
    assert judge["lopo_accuracy"] == 1.0 and judge["n_patients"] == 12 and judge["classes"] == sorted(centre)
    assert judge["model"].predict(np.array([[-520.0, 0.9]]))[0] == "ggo"


def _disk(radius, size=48, value=40.0, background=-850.0):
    yy, xx = np.mgrid[:size, :size]
    mask = (xx - size // 2) ** 2 + (yy - size // 2) ** 2 <= radius**2
    return np.where(mask, value, background), mask


def test_nodule_descriptors_of_a_disk_and_a_star():
    image, mask = _disk(10)
    d = nodule_descriptors(image, mask, (0.5, 0.5))
    assert list(d) == list(DESCRIPTORS)
    assert d["diameter_mm"] == pytest.approx(10.0, rel=0.03) and d["mean_hu"] == pytest.approx(40.0)
    assert d["hu_p90"] == pytest.approx(40.0) and d["hu_spread"] == pytest.approx(0.0)
    assert d["compactness"] == pytest.approx(1.0, abs=0.1) and d["solidity"] > 0.95
    yy, xx = np.mgrid[:48, :48]
    angle, radius = np.arctan2(yy - 24, xx - 24), np.hypot(yy - 24, xx - 24)
    star = radius <= 6 + 8 * (np.cos(6 * angle) > 0.7)  # a core with six spikes
    s = nodule_descriptors(np.where(star, 40.0, -850.0), star, (0.5, 0.5))
    assert s["compactness"] < 0.6 * d["compactness"] and s["solidity"] < 0.8
    assert all(math.isnan(v) for v in nodule_descriptors(image, np.zeros_like(mask), (1, 1)).values())


def test_contains_nodule_by_size_and_contrast():
    image, mask = _disk(4)
    assert nodule_contrast(image, mask) == pytest.approx(890.0)
    assert contains_nodule(image, mask)
    ggo, _ = _disk(4, value=-700.0)
    faint, _ = _disk(4, value=-800.0)
    assert contains_nodule(ggo, mask) and not contains_nodule(faint, mask)  # 150 vs 50 HU above the ring
    tiny = np.zeros_like(mask)
    tiny[24, 24:27] = True  # 3 pixels
    assert not contains_nodule(image, tiny) and not contains_nodule(image, np.zeros_like(mask))
    # one pixel of 100 HU inside a ring of 0 HU, ring of 1: contrast 100
    point = np.zeros((5, 5))
    point[2, 2] = 100.0
    assert nodule_contrast(point, point > 0, ring=1) == pytest.approx(100.0)


def test_crop_patches_centre_on_the_nodule_and_stay_inside():
    images = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    masks = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    masks[0, 0, 2:5, 12:15] = True  # centroid (3, 13): window clipped to rows 0-7, columns 8-15
    patches = crop_patches(images, masks, 8)
    assert patches.shape == (2, 1, 8, 8)
    torch.testing.assert_close(patches[0], images[0, :, 0:8, 8:16])
    torch.testing.assert_close(patches[1], images[1, :, 4:12, 4:12])  # empty mask: the centre
    # several channels share the window, and the gradient reaches the image (D_N crops the generator's output)
    pairs = torch.cat([images, 2 * images], dim=1).requires_grad_(True)
    cropped = crop_patches(pairs, masks, 8)
    torch.testing.assert_close(cropped[:, 1], 2 * patches[:, 0])
    cropped.sum().backward()
    assert pairs.grad[0, :, 0:8, 8:16].eq(1).all() and pairs.grad.sum().item() == 2 * 2 * 64


def test_two_sample_auc_keeps_groups_in_one_fold():
    """Ten 'patients' per side, each with 20 near-identical samples, drawn from ONE distribution: folds that split
    patients let the classifier recognise them (AUC far from 0.5); grouped folds do not."""
    rng = np.random.default_rng(0)
    centres_r, centres_g = rng.normal(size=(10, 8)), rng.normal(size=(10, 8))
    real = np.repeat(centres_r, 20, axis=0) + 0.01 * rng.normal(size=(200, 8))
    generated = np.repeat(centres_g, 20, axis=0) + 0.01 * rng.normal(size=(200, 8))
    groups = np.repeat(np.arange(10), 20)
    ungrouped = two_sample_auc(real, generated, num_resamples=50)
    grouped = two_sample_auc(real, generated, real_groups=groups, generated_groups=groups, num_resamples=50)
    assert ungrouped["auc"] > 0.8 and grouped["auc"] < 0.7
    assert grouped["dims"] == 8 and grouped["n_real"] == 200


def test_paste_nodules_keeps_the_background_outside_and_the_nodule_inside():
    from scripts.nodules import paste_nodules

    background = torch.full((1, 1, 32, 32), -0.8)
    background[0, 0, :, ::2] += 0.05  # a fine texture that must survive outside the nodule
    image = torch.full((1, 1, 32, 32), -0.9)
    image[0, 0, 12:20, 12:20] = 0.1
    mask = torch.zeros(1, 1, 32, 32)
    mask[0, 0, 12:20, 12:20] = 1
    pasted = paste_nodules(image, mask, background)
    torch.testing.assert_close(pasted[0, 0, :, :6], background[0, 0, :, :6])  # far from the nodule: unchanged
    assert pasted[0, 0, 15:17, 15:17].mean() > 0.0  # the nodule's density inside
    assert pasted[0, 0, 15, 15] != pasted[0, 0, 15, 16]  # ... with the background's texture on it


def test_usable_backgrounds_keep_lung_at_the_centre(tmp_path):
    import nibabel as nib
    from scripts.prepare import centre_hu, usable_backgrounds

    from gan_core.errors import BundleInputError

    lung = np.full((32, 32), -850.0, np.float32)
    wall = lung.copy()
    wall[:, 12:] = 40.0  # chest wall across the centre
    assert centre_hu(lung) == pytest.approx(-850.0) and centre_hu(wall) > -600
    nib.save(nib.Nifti1Image(wall, np.eye(4)), tmp_path / "wall.nii.gz")
    entries = [{"image": "lung", "centre_hu": -850.0}, {"image": str(tmp_path / "wall.nii.gz")}]
    assert usable_backgrounds(entries) == entries[:1]  # the second measured from its file
    assert usable_backgrounds(entries, None) == entries
    with pytest.raises(BundleInputError, match="lung"):
        usable_backgrounds(entries[1:])
