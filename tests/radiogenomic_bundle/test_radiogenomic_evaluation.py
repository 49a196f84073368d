"""Regional metrics and gene-code map code of the radiogenomic evaluation, on tiny inputs with known answers."""

import math

import numpy as np
import pytest
import torch
from monai.metrics import SSIMMetric
from scipy import ndimage
from scripts.gene_maps import (
    code_scores,
    embed_tsne,
    gene_attribution,
    nodule_features,
    plot_code_maps,
    plot_radiogenomic_map,
    top_genes,
)
from scripts.regional import regional_metrics


def test_regional_metrics_known_values():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 24, 24)
    same = regional_metrics(x, x.clone())
    assert same["mse"] == 0 and same["ssim"] == pytest.approx(1.0) and same["psnr"] == 100.0
    shifted = regional_metrics(x, x + 0.1)
    assert shifted["mse"] == pytest.approx(0.01) and shifted["psnr"] == pytest.approx(20.0)
    # a change confined to the left half leaves the right-half region untouched
    changed = x.clone()
    changed[..., :12] = 0.0
    right = torch.zeros_like(x)
    right[..., 12:] = 1
    assert regional_metrics(changed, x, right)["mse"] == 0.0
    assert regional_metrics(changed, x)["mse"] > 0.0
    # one identical image (capped at 100 dB) and one at MSE 0.01 (20 dB): the mean PSNR is 60 dB, the PSNR
    # of the mean MSE 0.005 is 23.0 dB
    mixed = regional_metrics(torch.stack([x[0], x[1] + 0.1]), x)
    assert mixed["psnr"] == pytest.approx(60.0) and mixed["identical"] == 1
    assert mixed["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(1 / 0.005))


def test_whole_slice_ssim_equals_monai():
    torch.manual_seed(1)
    x = torch.rand(3, 1, 32, 32)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    expected = SSIMMetric(spatial_dims=2, data_range=1.0)(x, y).mean().item()
    assert regional_metrics(x, y)["ssim"] == pytest.approx(expected, abs=1e-5)


def test_code_scores_separate_clusters_from_noise():
    rng = np.random.default_rng(0)
    phenotypes = np.repeat(["a", "b", "c"], 10)
    centres = {"a": [10, 0], "b": [0, 10], "c": [-10, -10]}
    clustered = np.array([centres[p] for p in phenotypes]) + rng.normal(0, 0.5, (30, 2))
    good = code_scores(clustered, phenotypes, n_clusters=3)
    assert good["ari"] == pytest.approx(1.0) and good["knn_accuracy"] == 1.0 and good["silhouette"] > 0.8
    noise = code_scores(rng.normal(size=(30, 8)), phenotypes, n_clusters=3)
    assert noise["ari"] < 0.3 and noise["knn_accuracy"] < 0.7
    assert embed_tsne(clustered).shape == (30, 2)


def test_gene_attribution_finds_the_driving_gene():
    gen = torch.Generator().manual_seed(0)
    genes = torch.randn(20, 6, generator=gen) * 0.3
    clusters = np.array([0] * 10 + [1] * 10)
    genes[:10, 2] += 2.0  # gene 2 separates the clusters ...
    genes[10:, 2] -= 2.0
    encoder = torch.nn.Linear(6, 3, bias=False)
    with torch.no_grad():
        encoder.weight.copy_(torch.tensor([[0, 0, 3.0, 0, 0, 0], [0.1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0.1, 0]]))
    attribution = gene_attribution(encoder, genes, clusters)  # ... and drives code dimension 0
    assert attribution.shape == (2, 6)
    names = [f"gene{j}" for j in range(6)]
    assert top_genes(attribution[0], names, 1)[0][0] == "gene2"
    assert top_genes(attribution[1], names, 1)[0][0] == "gene2"
    assert attribution[0, 2] == pytest.approx(3.0 * float(genes[:10, 2].mean()), rel=0.05)  # W[0, 2] * mean g


def test_nodule_features_of_a_disk():
    yy, xx = np.mgrid[:64, :64]
    disk = (xx - 32) ** 2 + (yy - 32) ** 2 <= 10**2
    sharp = np.where(disk, 40.0, -800.0)
    blurred = ndimage.gaussian_filter(sharp, 2.0)
    f_sharp = nodule_features(sharp, disk, (0.5, 0.5))
    f_blur = nodule_features(blurred, disk, (0.5, 0.5))
    assert f_sharp["diameter_mm"] == pytest.approx(10.0, rel=0.03)  # radius 10 px x 0.5 mm
    assert f_sharp["mean_hu"] == pytest.approx(40.0)
    assert f_sharp["margin_sharpness"] > 2 * f_blur["margin_sharpness"] > 0
    assert np.isnan(nodule_features(sharp, np.zeros_like(disk), (1, 1))["diameter_mm"])


def test_figures_are_written(tmp_path):
    xy = np.random.default_rng(0).normal(size=(6, 2))
    path = plot_code_maps({"raw genes": xy, "proposed code": xy}, [0, 0, 1, 1, 2, 2], list("aabbcc"),
                          {"raw genes": {"silhouette": 0.1, "ari": 0.0, "knn_accuracy": 0.3}}, tmp_path / "tsne.png")
    assert path.stat().st_size > 1000
    rows = [{"cluster": c, "num_subjects": 2, "diameter_mm": 10.0 + c, "mean_hu": -100.0, "margin_sharpness": 50.0,
             "top_genes": "g1;g2"} for c in range(3)]
    assert plot_radiogenomic_map(rows, tmp_path / "map.png").stat().st_size > 1000


def test_matched_outputs_hold_each_patient_as_often_as_the_real_slices():
    from scripts.evaluation import matched_outputs

    k, p, n = 2, 3, 2  # 2 backgrounds x 3 profiles x 2 noise draws
    slices = ["b", "a", "b", "b", "b", "b"]  # 1 slice of a, 5 of b (b has only 4 outputs), none of c
    picks = matched_outputs(slices, ["a", "b", "c"], (k, p, n), seed=0)
    profile = (picks // n) % p
    assert profile.tolist() == [1, 0, 1, 1, 1, 1]
    b_picks = picks[np.array(slices) == "b"].tolist()
    assert len(set(b_picks[:4])) == 4 and b_picks[4] in b_picks[:4]  # without replacement while they last
    assert picks.max() < k * p * n and picks.tolist() == matched_outputs(slices, ["a", "b", "c"], (k, p, n), 0).tolist()
