"""Statistics of the radiogenomic evaluation that can tell a learned map from chance.

With tens of patients, one cross-validation split of a k-NN classifier scatters by +/- 0.1, and a shuffled
label reaches 0.5 in one split out of twenty. Every number here therefore comes with its spread or its null:

- :func:`knn_cv`: k-NN phenotype accuracy of a representation (k = 5, stratified 5-fold) over many CV shuffles
  (mean, sd, range), and each patient's rate of being classified right over the shuffles;
- :func:`knn_transfer`: held-out patients classified by their nearest TRAINING patients (does the map carry
  over to patients the generator never saw?);
- :func:`label_null`: the same statistic with the phenotype labels permuted (its mean, 95th percentile and the
  permutation p-value of the observed value);
- :func:`label_silhouette`: silhouette of the representation with the phenotypes as clusters;
- :func:`paired_bootstrap`: patient-bootstrap interval of the mean difference of two per-patient measures
  (e.g. code - raw genes), so the comparison of two representations on the same patients is paired;
- :func:`spearman_ci`: Spearman correlation with a patient-bootstrap interval;
- :func:`swap_sensitivity`: how much an output changes when the gene profile is swapped vs when the noise is;
- :func:`two_sample_auc`: a classifier two-sample test (Lopez-Paz & Oquab 2017): the cross-validated AUC of a
  logistic regression telling real from generated; 0.5 = indistinguishable;
- :func:`descriptor_judge`: a logistic regression on measured nodule descriptors, with its own
  leave-one-patient-out accuracy on real slices, judging the phenotype of generated nodules.

All functions take NumPy arrays, use only ``seed`` for randomness and return plain dicts of floats / lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "descriptor_judge",
    "knn_cv",
    "knn_transfer",
    "label_null",
    "label_silhouette",
    "paired_bootstrap",
    "spearman_ci",
    "stratified_folds",
    "swap_sensitivity",
    "two_sample_auc",
]


def _codes(labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """labels -> (sorted unique labels, integer code of each label)."""
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    return classes, codes.astype(np.int64)


def _distances(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, np.float64)
    sq = (x * x).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    return np.sqrt(d2)


def stratified_folds(codes: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index of each sample: every class's members in random order, dealt to the folds in turn, starting
    at a random fold per class (so folds differ in size by at most one per class)."""
    out = np.empty(codes.size, dtype=np.int64)
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        members = members[rng.permutation(members.size)]
        out[members] = (np.arange(members.size) + rng.integers(folds)) % folds
    return out


def _vote(neighbour_codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority class of each row of neighbour labels (ties -> the lowest class index, as scikit-learn)."""
    counts = np.zeros((neighbour_codes.shape[0], num_classes), dtype=np.int64)
    for j in range(neighbour_codes.shape[1]):
        np.add.at(counts, (np.arange(neighbour_codes.shape[0]), neighbour_codes[:, j]), 1)
    return counts.argmax(axis=1)


def _knn_predict(distances: np.ndarray, allowed: np.ndarray, codes: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Prediction of each row from its ``k`` nearest allowed columns (ties in distance: lower index first)."""
    d = np.where(allowed, distances, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return _vote(codes[order], num_classes)


def knn_cv(features: np.ndarray, labels: Sequence, *, k: int = 5, folds: int = 5, shuffles: int = 200,
           seed: int = 0, distances: np.ndarray | None = None) -> dict:
    """k-NN accuracy of predicting ``labels`` from ``features`` by stratified k-fold cross-validation, repeated
    over ``shuffles`` random fold assignments.

    Args:
        features: (N, D) one row per patient.
        labels: (N,) phenotype of each patient.
        k: neighbours (at most the size of the smallest training fold).
        folds: at most the smallest class size.
        distances: (N, N) precomputed Euclidean distances (optional).

    Returns:
        ``{"mean", "sd", "min", "max", "per_shuffle": [S], "per_patient": [N] (the fraction of shuffles in which
        each patient was classified right), "folds", "k", "shuffles"}``; NaNs when a class has fewer than 2 members.
    """
    classes, codes = _codes(labels)
    n = codes.size
    counts = np.bincount(codes)
    n_folds = int(min(folds, counts.min()))
    if n_folds < 2:
        nan = float("nan")
        return {"mean": nan, "sd": nan, "min": nan, "max": nan, "per_shuffle": [], "per_patient": [nan] * n,
                "folds": n_folds, "k": k, "shuffles": 0}
    d = _distances(features) if distances is None else np.asarray(distances, np.float64)
    k = int(min(k, n - int(np.ceil(n / n_folds))))
    rng = np.random.default_rng(seed)
    accuracies, right = [], np.zeros(n)
    for _ in range(int(shuffles)):
        fold = stratified_folds(codes, n_folds, rng)
        predicted = _knn_predict(d, fold[:, None] != fold[None, :], codes, k, classes.size)
        hit = predicted == codes
        accuracies.append(float(hit.mean()))
        right += hit
    acc = np.asarray(accuracies)
    return {"mean": float(acc.mean()), "sd": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            "min": float(acc.min()), "max": float(acc.max()), "per_shuffle": acc.tolist(),
            "per_patient": (right / len(acc)).tolist(), "folds": n_folds, "k": k, "shuffles": int(shuffles)}


def knn_transfer(train_features: np.ndarray, train_labels: Sequence, test_features: np.ndarray,
                 test_labels: Sequence, *, k: int = 5) -> dict:
    """Each test patient classified by its ``k`` nearest training patients.

    Returns:
        ``{"accuracy", "per_patient": [0/1 per test patient], "k"}`` (NaN accuracy without test patients).
    """
    classes, codes = _codes(list(train_labels) + list(test_labels))
    n_train = len(train_labels)
    if len(test_labels) == 0 or n_train == 0:
        return {"accuracy": float("nan"), "per_patient": [], "k": k}
    x = np.concatenate([np.asarray(train_features, np.float64), np.asarray(test_features, np.float64)])
    d = _distances(x)[n_train:, :n_train]
    k = int(min(k, n_train))
    predicted = _knn_predict(d, np.ones_like(d, dtype=bool), codes[:n_train], k, classes.size)
    hit = (predicted == codes[n_train:]).astype(np.float64)
    return {"accuracy": float(hit.mean()), "per_patient": hit.tolist(), "k": k}


def label_silhouette(features: np.ndarray, labels: Sequence) -> float:
    """Silhouette (Euclidean) of ``features`` with the labels as clusters; NaN with fewer than two labels."""
    _, codes = _codes(labels)
    if not 1 < np.unique(codes).size < codes.size:
        return float("nan")
    return float(silhouette_score(np.asarray(features, np.float64), codes))


def label_null(features: np.ndarray, labels: Sequence, observed: dict, *, permutations: int = 200,
               shuffles: int = 10, k: int = 5, folds: int = 5, seed: int = 0) -> dict:
    """The k-NN accuracy and label silhouette of ``features`` when the labels are permuted at random.

    Each permutation is scored like the observed labels (k-NN averaged over ``shuffles`` CV shuffles). The
    p-value is ``(1 + #(null >= observed)) / (1 + permutations)``.

    Args:
        observed: ``{"knn": observed mean k-NN accuracy, "silhouette": observed label silhouette}``.

    Returns:
        ``{"knn": {"mean", "p95", "p_value", "values"}, "silhouette": {...}}``.
    """
    labels = np.asarray(labels)
    d = _distances(features)
    rng = np.random.default_rng(seed)
    knn_values, sil_values = [], []
    for i in range(int(permutations)):
        permuted = labels[rng.permutation(labels.size)]
        knn_values.append(knn_cv(features, permuted, k=k, folds=folds, shuffles=shuffles, seed=seed + 1 + i,
                                 distances=d)["mean"])
        sil_values.append(label_silhouette(features, permuted))

    def summary(values: list[float], value: float) -> dict:
        arr = np.asarray(values, np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0 or not np.isfinite(value):
            return {"mean": float("nan"), "p95": float("nan"), "p_value": float("nan"), "values": arr.tolist()}
        return {"mean": float(arr.mean()), "p95": float(np.percentile(arr, 95)),
                "p_value": float((1 + np.sum(arr >= value)) / (1 + arr.size)), "values": arr.tolist()}

    return {"knn": summary(knn_values, observed.get("knn", float("nan"))),
            "silhouette": summary(sil_values, observed.get("silhouette", float("nan"))),
            "permutations": int(permutations), "shuffles_per_permutation": int(shuffles)}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, num_resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of ``b - a`` over patients and its percentile bootstrap interval (patients resampled with replacement).

    Args:
        a, b: (N,) per-patient values of two measures on the same patients (NaN pairs are left out).

    Returns:
        ``{"difference", "ci95": [lo, hi] or None (fewer than two patients), "n"}``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need one shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = b[keep] - a[keep]
    if diff.size == 0:
        return {"difference": float("nan"), "ci95": None, "n": 0}
    out = {"difference": float(diff.mean()), "ci95": None, "n": int(diff.size)}
    if diff.size >= 2:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, diff.size, (int(num_resamples), diff.size))].mean(axis=1)
        tail = (1.0 - level) / 2.0 * 100.0
        out["ci95"] = [float(np.percentile(means, tail)), float(np.percentile(means, 100.0 - tail))]
    return out


def spearman_ci(x: Sequence[float], y: Sequence[float], *, num_resamples: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict:
    """Spearman's rho of paired values (NaN pairs left out) with a percentile bootstrap interval over pairs.

    Returns:
        ``{"rho", "ci95": [lo, hi] or None, "n"}`` (rho NaN with fewer than three pairs).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return {"rho": float("nan"), "ci95": None, "n": int(x.size)}
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(num_resamples)):
        idx = rng.integers(0, x.size, x.size)
        if np.unique(x[idx]).size > 1 and np.unique(y[idx]).size > 1:
            values.append(stats.spearmanr(x[idx], y[idx]).statistic)
    tail = (1.0 - level) / 2.0 * 100.0
    ci = [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))] if values else None
    return {"rho": rho, "ci95": ci, "n": int(x.size)}


def _mean_abs_pair_difference(values: np.ndarray, axis: int, pair_mask: np.ndarray | None = None) -> float:
    """Mean |v_i - v_j| over pairs i < j along ``axis`` of an array, the other axes held fixed; NaNs skipped.

    ``pair_mask`` (n, n) bool restricts the pairs (used for the profile axis)."""
    v = np.moveaxis(np.asarray(values, np.float64), axis, 0)
    n = v.shape[0]
    i, j = np.triu_indices(n, k=1)
    if pair_mask is not None:
        keep = pair_mask[i, j]
        i, j = i[keep], j[keep]
    if i.size == 0:
        return float("nan")
    diffs = np.abs(v[i] - v[j])
    return float(np.nanmean(diffs)) if np.isfinite(diffs).any() else float("nan")


def swap_sensitivity(values: np.ndarray, phenotypes: Sequence | None = None,
                     real_values: Sequence[float] | None = None) -> dict:
    """How much a measured output (e.g. nodule area or mean HU) changes under a gene swap vs a noise swap.

    Args:
        values: (K, P, N) the measure on K backgrounds x P gene profiles x N noise draws (NaN: no nodule).
        phenotypes: (P,) labels of the profiles, for the same- vs cross-phenotype gene swaps.
        real_values: (P,) the measure on each profile's real nodule, for the same ratio among real nodules.

    Returns:
        ``{"gene_swap": mean |v(k, p, n) - v(k, p', n)|, "noise_swap": mean |v(k, p, n) - v(k, p, n')|,
        "noise_over_gene": their ratio}``, and with phenotypes ``"same_phenotype_swap"``,
        ``"cross_phenotype_swap"``, ``"same_over_cross"`` (and ``"real_same_over_cross"`` with real values).
    """
    values = np.asarray(values, np.float64)
    gene = _mean_abs_pair_difference(values, axis=1)
    noise = _mean_abs_pair_difference(values, axis=2) if values.shape[2] > 1 else float("nan")
    out = {"gene_swap": gene, "noise_swap": noise,
           "noise_over_gene": noise / gene if gene and np.isfinite(gene) and np.isfinite(noise) else float("nan")}
    if phenotypes is not None:
        labels = np.asarray(phenotypes)
        same = labels[:, None] == labels[None, :]
        s = _mean_abs_pair_difference(values, axis=1, pair_mask=same)
        c = _mean_abs_pair_difference(values, axis=1, pair_mask=~same)
        out.update({"same_phenotype_swap": s, "cross_phenotype_swap": c,
                    "same_over_cross": s / c if c and np.isfinite(c) and np.isfinite(s) else float("nan")})
        if real_values is not None:
            real = np.asarray(real_values, np.float64)[None, :, None]
            rs = _mean_abs_pair_difference(real, axis=1, pair_mask=same)
            rc = _mean_abs_pair_difference(real, axis=1, pair_mask=~same)
            out["real_same_over_cross"] = rs / rc if rc and np.isfinite(rc) and np.isfinite(rs) else float("nan")
    return out


def _group_folds(groups: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each sample: whole groups dealt to the folds in a random order (a group never spans two folds)."""
    unique, inverse = np.unique(groups, return_inverse=True)
    fold_of = rng.permutation(unique.size) % folds
    return fold_of[inverse]


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` (n,) in {0, 1} ranked by ``scores`` (n,), ties counted one
    half: ``sklearn.metrics.roc_auc_score``'s number, from the average ranks (Mann-Whitney U) without its per-call
    input validation (~9 ms, which a 1000-resample bootstrap pays 1000 times)."""
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("the AUC needs both labels")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def two_sample_auc(real: np.ndarray, generated: np.ndarray, *, real_groups: Sequence | None = None,
                   generated_groups: Sequence | None = None, folds: int = 5, dims: int | None = 8, c: float = 1.0,
                   seed: int = 0, num_resamples: int = 1000) -> dict:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): can a logistic regression tell real from generated?

    The larger set is subsampled (from ``seed``) to the size of the smaller one. Folds are formed from whole
    groups (a patient's slices, a generated image's background or profile): slices of one patient look alike, and
    a classifier that saw some of them in training would recognise the patient, not realism. Inside each fold the
    features are standardised and projected on their ``dims`` leading principal axes (fitted on the training
    part; ``None`` keeps all), and a class-balanced L2 logistic regression (``C = c``) scores the held-out fold.
    The AUC of all out-of-fold scores is the statistic: 0.5 when real and generated cannot be told apart, 1.0
    when they always can. Interval: percentile bootstrap of the out-of-fold scores.

    Args:
        real: (M, F) features of real samples; generated: (N, F) of generated ones (rows with NaN dropped).
        real_groups, generated_groups: (M,), (N,) group labels (default: every sample its own group).

    Returns:
        ``{"auc", "ci95", "n_real", "n_generated", "folds", "dims"}`` (NaN with fewer than ``folds`` samples a side).
    """
    from sklearn.decomposition import PCA

    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    rg = np.asarray(real_groups if real_groups is not None else np.arange(real.shape[0])).astype(str)
    gg = np.asarray(generated_groups if generated_groups is not None else np.arange(generated.shape[0])).astype(str)
    keep_r, keep_g = np.isfinite(real).all(axis=1), np.isfinite(generated).all(axis=1)
    real, rg, generated, gg = real[keep_r], rg[keep_r], generated[keep_g], gg[keep_g]
    rng = np.random.default_rng(seed)
    n = min(real.shape[0], generated.shape[0])
    out = {"auc": float("nan"), "ci95": None, "n_real": int(real.shape[0]), "n_generated": int(generated.shape[0]),
           "folds": folds, "dims": dims}
    if n < folds:
        return out
    pick_r, pick_g = rng.permutation(real.shape[0])[:n], rng.permutation(generated.shape[0])[:n]
    x = np.concatenate([real[pick_r], generated[pick_g]])
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
    groups = np.concatenate([np.char.add("real:", rg[pick_r]), np.char.add("generated:", gg[pick_g])])
    fold = _group_folds(groups, folds, rng)
    scores = np.full(2 * n, np.nan)
    for f in range(folds):
        test = fold == f
        if not test.any() or np.unique(y[~test]).size < 2:
            continue
        steps = [StandardScaler()]
        if dims is not None and dims < x.shape[1]:
            steps.append(PCA(int(min(dims, (~test).sum() - 1)), random_state=0))
        steps.append(LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
        scores[test] = make_pipeline(*steps).fit(x[~test], y[~test]).decision_function(x[test])
    valid = np.isfinite(scores)
    if np.unique(y[valid]).size < 2:
        return out
    y, scores = y[valid], scores[valid]
    auc = binary_auc(y, scores)
    values = []
    for _ in range(int(num_resamples)):
        idx = rng.integers(0, y.size, y.size)
        if 0 < y[idx].sum() < y.size:
            values.append(binary_auc(y[idx], scores[idx]))
    ci = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    return {**out, "auc": auc, "ci95": ci, "n_real": n, "n_generated": n}


def descriptor_judge(descriptors: np.ndarray, labels: Sequence, groups: Sequence, *, c: float = 1.0) -> dict:
    """A phenotype judge from measured nodule descriptors: an L2 logistic regression on standardised descriptors.

    Args:
        descriptors: (N, D) real nodule slices (rows with NaN dropped).
        labels: (N,) phenotype of each slice's patient.
        groups: (N,) patient of each slice.

    Returns:
        ``{"model": the fitted pipeline (all slices), "classes": [...], "lopo_accuracy": accuracy of the
        leave-one-patient-out predictions, "lopo_class_mean": their mean per-class accuracy, "n_slices",
        "n_patients"}``.
    """
    x = np.asarray(descriptors, np.float64)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    keep = np.isfinite(x).all(axis=1)
    x, labels, groups = x[keep], labels[keep], groups[keep]
    classes = np.unique(labels)
    predicted = np.empty(labels.size, dtype=labels.dtype)
    for g in np.unique(groups):
        test = groups == g
        if np.unique(labels[~test]).size < 2:
            predicted[test] = labels[~test][0] if (~test).any() else labels[test]
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x[~test], labels[~test])
        predicted[test] = model.predict(x[test])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, labels)
    hit = predicted == labels
    return {"model": model, "classes": classes.tolist(), "lopo_accuracy": float(hit.mean()),
            "lopo_class_mean": float(np.mean([hit[labels == k].mean() for k in classes])),
            "n_slices": int(labels.size), "n_patients": int(np.unique(groups).size)}
