"""The metric registry on inputs with known answers: identical sets, disjoint sets, planted copies, collapse."""

import json
import math

import numpy as np
import pytest
import torch

from gan_core.errors import BundleInputError
from gan_core.evaluation.features import VGGExtractor, get_extractor, list_extractors
from gan_core.evaluation.metrics import (
    MS_SSIM_MIN_SIDE,
    RESULT_KEYS,
    SampleSets,
    bootstrap_ci,
    compute_metrics,
    list_metrics,
    pairwise_ms_ssim,
    save_closest_pairs,
    write_metrics_json,
)

CHEAP = "pixels_16"  # registered extractor without a network: fast known-answer tests


def blobs(n: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    """(n, 1, H, W) smooth images in [-1, 1]: three Gaussian blobs of random place, width and height each."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    centres = torch.rand(n, 3, 2, generator=gen) * 1.4 - 0.7
    widths = 0.15 + 0.25 * torch.rand(n, 3, 1, 1, generator=gen)
    heights = 0.5 + 0.5 * torch.rand(n, 3, 1, 1, generator=gen)
    d2 = (xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2
    image = (heights * torch.exp(-d2 / (2 * widths**2))).sum(dim=1, keepdim=True)
    return image.clamp(0, 1) * 2 - 1


def noise(n: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    """(n, 1, H, W) independent uniform noise in [-1, 1]."""
    return torch.rand(n, 1, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def covers(ci, x: float) -> bool:
    return ci is not None and ci[0] <= x <= ci[1]


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_of_a_mean_covers_zero_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 800):
        x = rng.standard_normal(n)
        ci = bootstrap_ci(lambda i, x=x: x[i].mean(axis=1), (n,), num_resamples=1000, seed=1)
        assert covers(ci, 0.0)
        # the percentile interval of a mean is about +-1.96 sd / sqrt(n)
        assert ci[1] - ci[0] == pytest.approx(2 * 1.96 * x.std() / math.sqrt(n), rel=0.2)
        widths.append(ci[1] - ci[0])
    assert widths[1] < widths[0] / 3  # sqrt(800 / 50) = 4


def test_half_sampling_and_centred_intervals_match_the_bootstrap_for_a_mean():
    x = np.random.default_rng(2).standard_normal(400) + 3.0
    stat = lambda i: x[i].mean(axis=1)  # noqa: E731
    plain = bootstrap_ci(stat, (400,), num_resamples=1000, seed=0)
    half = bootstrap_ci(stat, (400,), num_resamples=1000, seed=0, method="half", estimate=float(x.mean()))
    centred = bootstrap_ci(stat, (400,), num_resamples=1000, seed=0, method="centred", estimate=float(x.mean()))
    for ci in (half, centred):
        assert covers(ci, float(x.mean()))
        assert ci[1] - ci[0] == pytest.approx(plain[1] - plain[0], rel=0.2)
    assert bootstrap_ci(stat, (400,), seed=5) == bootstrap_ci(stat, (400,), seed=5)


# ---------------------------------------------------------------------------------------------- identical


def test_identical_sets_give_the_perfect_scores():
    train, held = blobs(30, seed=1), blobs(30, seed=2)
    sets = SampleSets(held.clone(), train, held, extractor=CHEAP)
    r = compute_metrics(["fid", "kid", "precision", "recall", "coverage", "density"], sets, num_bootstrap=300)
    assert abs(r["fid"]["value"]) < 1e-6 * r["fid"]["reference"]["value"]
    # The unbiased KID of a set against itself is slightly negative: its cross term holds the n diagonal
    # k(x, x) that the within-set terms leave out: 2 [S_off / (n (n - 1)) - (S_off + S_diag) / n^2].
    f = sets.standardised("heldout")
    k = (f @ f.T / f.shape[1] + 1) ** 3
    n, diag = len(f), np.trace(k)
    expected = 2 * ((k.sum() - diag) / (n * (n - 1)) - k.sum() / n**2)
    assert r["kid"]["value"] == pytest.approx(expected, rel=1e-9)
    assert -2 * diag / n / (n - 1) < r["kid"]["value"] < 0
    for name in ("precision", "recall", "coverage"):
        assert r[name]["value"] == 1.0 and r[name]["ci95"] == [1.0, 1.0]
    assert 0.7 < r["density"]["value"] < 1.5


def test_a_collapsed_generator_has_full_precision_and_the_recall_of_one_image():
    train, held = blobs(20, seed=1), blobs(20, seed=2)
    sets = SampleSets(held[:1].repeat(15, 1, 1, 1), train, held, extractor=CHEAP)
    r = compute_metrics(["precision", "recall", "coverage", "ms_ssim_diversity"], sets, num_bootstrap=100)
    assert r["precision"]["value"] == 1.0
    # the generated manifold is one point (k-NN radius 0): only held-out image 0 lies in it
    assert r["recall"]["value"] == pytest.approx(1 / 20)
    assert r["coverage"]["value"] < 0.5 < r["coverage"]["reference"]["value"]
    assert r["ms_ssim_diversity"]["value"] == pytest.approx(1.0, abs=1e-4)


def test_copies_of_training_images_have_ratio_zero_and_are_all_flagged():
    train, held = blobs(20, seed=1), blobs(15, seed=2)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))[:12]
    sets = SampleSets(train[perm], train, held, extractor=CHEAP)
    r = compute_metrics(["memorisation_pixel", "memorisation_features"], sets, num_bootstrap=200)
    for result in r.values():
        assert result["value"] == pytest.approx(0.0, abs=1e-6)
        assert result["ci95"][1] < 0.05
        assert sorted(result["details"]["flagged"]) == list(range(12))
        assert result["details"]["flagged_fraction"] == 1.0
        first = result["details"]["closest_pairs"][0]
        assert first["train"] == int(perm[first["generated"]]) and first["flagged"]
        assert result["reference"]["value"] == 1.0 and result["read_with"] == ["precision"]


def test_fresh_samples_of_the_real_distribution_sit_at_the_real_floor():
    """Two independent draws of one distribution: KID's interval covers 0 (its true value)."""
    train, held, gen = blobs(40, seed=1), blobs(40, seed=2), blobs(40, seed=3)
    r = compute_metrics(["kid", "memorisation_pixel", "precision"], SampleSets(gen, train, held, extractor=CHEAP),
                        num_bootstrap=300)
    assert covers(r["kid"]["ci95"], 0.0)
    assert covers(r["memorisation_pixel"]["ci95"], 1.0)
    assert r["precision"]["value"] > 0.7


# ---------------------------------------------------------------------------------------------- disjoint


@pytest.mark.parametrize("fake", ["noise", "constant"])
def test_disjoint_sets_are_far_above_the_real_floor_with_the_default_vgg_features(fake):
    train, held = blobs(24, seed=1), blobs(24, seed=2)
    gen = noise(24, seed=3) if fake == "noise" else torch.full((24, 1, 32, 32), -0.2)
    sets = SampleSets(gen, train, held)  # default extractor: random-filter VGG-19
    r = compute_metrics(["fid", "kid", "precision", "coverage", "memorisation_features"], sets, num_bootstrap=200)
    assert r["fid"]["ci95"][0] > 5 * r["fid"]["reference"]["ci95"][1]
    assert r["kid"]["ci95"][0] > 10 * max(r["kid"]["reference"]["ci95"][1], 1e-3)
    assert r["precision"]["value"] <= 0.05 < 0.5 < r["precision"]["reference"]["value"]
    assert r["coverage"]["value"] <= 0.05 < 0.5 < r["coverage"]["reference"]["value"]
    # far from everything: no copies, and the result says what to read it with
    assert r["memorisation_features"]["value"] > 1.5 and r["memorisation_features"]["details"]["flagged"] == []
    assert "precision" in r["memorisation_features"]["read_with"]
    assert r["fid"]["details"]["features"] == "vgg19_random0_relu3_1_meanstd_64"


# ---------------------------------------------------------------------------------------------- planted copy


def test_a_copied_training_image_among_fresh_samples_is_flagged_and_listed_first(tmp_path):
    train, held, gen = blobs(30, seed=1), blobs(20, seed=2), blobs(25, seed=3)
    gen[11] = train[7]
    conditions = {"generated_conditions": torch.arange(25) % 2, "train_conditions": torch.arange(30) % 2,
                  "heldout_conditions": torch.arange(20) % 2}
    sets = SampleSets(gen, train, held, extractor=CHEAP, **conditions)
    r = compute_metrics(["memorisation_pixel", "memorisation_features"], sets, num_bootstrap=100)
    for result in r.values():
        first = result["details"]["closest_pairs"][0]
        assert (first["generated"], first["train"], first["flagged"]) == (11, 7, True)
        assert first["distance"] == pytest.approx(0.0, abs=1e-6)
        assert result["details"]["flagged"][0] == 11
        assert first["generated_condition"] == 1 and first["train_condition"] == 1
        assert result["details"]["closest_pairs"][1]["distance"] > 0.01
        assert result["value"] > 0.5  # one copy does not move the median
    png = save_closest_pairs(sets, r["memorisation_pixel"], tmp_path / "closest.png", num_pairs=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "closest.png"]


# ---------------------------------------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize("size", [(48, 80), (64, 64), (32, 32)])
def test_ms_ssim_diversity_is_one_for_copies_and_low_for_noise(size):
    train, held = blobs(6, size, seed=1), blobs(6, size, seed=2)
    copies = blobs(1, size, seed=3).repeat(8, 1, 1, 1)
    collapsed = compute_metrics(["ms_ssim_diversity"], SampleSets(copies, train, held, extractor=CHEAP),
                                num_bootstrap=100)["ms_ssim_diversity"]
    assert collapsed["value"] == pytest.approx(1.0, abs=1e-4)
    assert collapsed["ci95"][0] == pytest.approx(1.0, abs=1e-4)
    diverse = compute_metrics(["ms_ssim_diversity"], SampleSets(noise(8, size, seed=4), train, held, extractor=CHEAP),
                              num_bootstrap=100)["ms_ssim_diversity"]
    assert diverse["value"] < 0.1 and diverse["ci95"][1] < 0.15
    # the real images' own diversity is the reference, and it lies between the two
    assert diverse["value"] < diverse["reference"]["value"] < collapsed["value"]
    assert collapsed["details"]["per_condition"]["all"]["pairs_generated"] == 28


def test_ms_ssim_diversity_per_condition_compares_like_with_like():
    size = (32, 32)
    gen = torch.cat([blobs(1, size, seed=5).repeat(5, 1, 1, 1), noise(5, size, seed=6)])
    gen_c, train_c, held_c = torch.tensor([0] * 5 + [1] * 5), torch.tensor([0, 1] * 4), torch.tensor([0, 1, 2])
    sets = SampleSets(gen, blobs(8, size, seed=1), blobs(3, size, seed=2), generated_conditions=gen_c,
                      train_conditions=train_c, heldout_conditions=held_c, extractor=CHEAP)
    r = compute_metrics(["ms_ssim_diversity"], sets, num_bootstrap=100)["ms_ssim_diversity"]
    per = r["details"]["per_condition"]
    assert per["0"]["generated"] == pytest.approx(1.0, abs=1e-4) and per["1"]["generated"] < 0.1
    assert per["2"]["generated"] is None and per["2"]["n_real"] == 1 and per["2"]["real"] is None
    assert r["details"]["conditions_in_value"] == ["0", "1"] == r["details"]["conditions_in_reference"]
    assert r["value"] == pytest.approx((per["0"]["generated"] + per["1"]["generated"]) / 2)


def test_ms_ssim_rejects_images_below_its_minimum_side():
    small = noise(4, (MS_SSIM_MIN_SIDE - 4, 40))
    with pytest.raises(BundleInputError, match="too small for MS-SSIM"):
        pairwise_ms_ssim(small, np.array([[0, 1]]))
    assert pairwise_ms_ssim(noise(2, (MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE)), np.array([[0, 1]])).shape == (1,)


# ---------------------------------------------------------------------------------------------- registry


def test_unknown_metric_names_the_name_and_lists_the_known_ones():
    sets = SampleSets(blobs(6), blobs(6, seed=1), blobs(6, seed=2), extractor=CHEAP)
    with pytest.raises(BundleInputError) as info:
        compute_metrics(["fid", "inception_score"], sets)
    assert "inception_score" in str(info.value)
    assert all(name in str(info.value) for name in list_metrics())
    with pytest.raises(BundleInputError, match="unknown option"):
        compute_metrics(["precision"], sets, options={"precision": {"neighbours": 4}})
    with pytest.raises(BundleInputError, match="unknown feature extractor"):
        SampleSets(blobs(6), blobs(6, seed=1), blobs(6, seed=2), extractor="inception_v3")


def test_every_metric_returns_one_shape_serialisable_and_repeatable(tmp_path):
    def make_sets():
        c = torch.arange(12) % 3
        return SampleSets(blobs(12, seed=3), blobs(12, seed=1), blobs(12, seed=2), generated_conditions=c,
                          train_conditions=c, heldout_conditions=c, extractor=CHEAP)

    names = list(list_metrics())
    assert {"fid", "kid", "precision", "recall", "density", "coverage", "ms_ssim_diversity",
            "memorisation_pixel", "memorisation_features"} <= set(names)
    first = compute_metrics(names, make_sets(), seed=3, num_bootstrap=100)
    again = compute_metrics(names, make_sets(), seed=3, num_bootstrap=100)
    other = compute_metrics(names, make_sets(), seed=4, num_bootstrap=100)
    assert list(first) == names
    for name, result in first.items():
        assert tuple(result) == RESULT_KEYS, name
        assert isinstance(result["value"], float) and isinstance(result["n"], dict), name
        assert result["ci95"] is None or (len(result["ci95"]) == 2 and result["ci95"][0] <= result["ci95"][1]), name
        assert set(result["reference"]) == {"value", "ci95", "what"}, name
        assert result["target"] in ("lower", "higher", "near_reference", "at_least_reference"), name
    text = json.dumps(first, allow_nan=False)
    assert json.loads(text) == first == again
    assert other["kid"]["ci95"] != first["kid"]["ci95"]  # the seed drives the resamples
    # one metric alone gives the same numbers as within the full list
    assert compute_metrics(["recall"], make_sets(), seed=3, num_bootstrap=100)["recall"] == first["recall"]


def test_options_reach_the_metric():
    sets = SampleSets(blobs(12, seed=3), blobs(12, seed=1), blobs(12, seed=2), extractor=CHEAP)
    r = compute_metrics(["precision"], sets, num_bootstrap=50, options={"precision": {"k": 5}})
    assert r["precision"]["details"]["k"] == 5
    with pytest.raises(BundleInputError, match="more than k images"):
        compute_metrics(["precision"], sets, options={"precision": {"k": 12}})


def test_write_metrics_json_is_atomic_and_turns_nan_into_null(tmp_path):
    results = {"fid": {"value": float("nan"), "ci95": [np.float32(1.5), float("inf")], "reference": None,
                       "n": {"generated": np.int64(3)}, "target": "lower", "read_with": [], "details": {}}}
    path = write_metrics_json(tmp_path / "out" / "metrics.json", results, seed=3, bundle="radiogan")
    data = json.loads(path.read_text())
    assert data == {"seed": 3, "bundle": "radiogan", "metrics": {"fid": {
        "value": None, "ci95": [1.5, None], "reference": None, "n": {"generated": 3}, "target": "lower",
        "read_with": [], "details": {}}}}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    with pytest.raises(ValueError, match="metrics"):
        write_metrics_json(tmp_path / "x.json", results, metrics=1)


# ---------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(generated=blobs(5)[:, 0]), "shape"),
    (lambda s: s.update(heldout=blobs(1)), "at least two"),
    (lambda s: s.update(train=blobs(5) * 255), "range"),
    (lambda s: s.update(train=blobs(5, (32, 40))), "sizes differ"),
    (lambda s: s.update(generated_conditions=[0] * 5), "some sets only"),
])
def test_bad_inputs_raise_bundle_input_errors(change, message):
    kwargs = {"generated": blobs(5), "train": blobs(5, seed=1), "heldout": blobs(5, seed=2), "extractor": CHEAP}
    change(kwargs)
    with pytest.raises(BundleInputError, match=message):
        SampleSets(**kwargs)


# ---------------------------------------------------------------------------------------------- extractors


def test_vgg_extractor_is_fixed_and_offline():
    assert "vgg19_random0_relu3_1_meanstd_64" in list_extractors()
    x = blobs(5, (48, 80), seed=1)
    a = VGGExtractor("relu3_1", 64)(x)
    b = VGGExtractor("relu3_1", 64)(x)  # a second build: same filters from the same seed
    assert a.shape == (5, 512) and torch.equal(a, b)
    assert torch.equal(get_extractor("vgg19_random0_relu3_1_meanstd_64")(x), a)
    assert not torch.allclose(VGGExtractor("relu3_1", 64, seed=1)(x), a)
    assert float(a[:, 256:].abs().sum()) > 0  # std pooling is not degenerate
    assert get_extractor("pixels_16")(noise(3, (64, 64))).shape == (3, 256)
