"""Gene-code maps (Xu et al., Fig. 4) and the radiogenomic map: t-SNE, k-means, scores, attribution, nodule features.

Numbers a reader can compare between gene representations (raw genes, baseline code, proposed code):
silhouette of the k-means clusters, adjusted Rand index of those clusters against known phenotypes, and
the k-fold cross-validated k-NN accuracy of predicting the phenotype from the representation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from gan_core.figures import plt, save_figure


def embed_tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) t-SNE embedding (PCA initialisation, perplexity min(30, (N - 1) / 3)).

    The exact gradient is used up to 1000 points: for cohort-sized N it is faster than Barnes-Hut here.
    """
    n = features.shape[0]
    perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
    method = "exact" if n <= 1000 else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method).fit_transform(
        np.asarray(features, dtype=np.float64)
    )


def kmeans_labels(features: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N,) k-means cluster indices (10 restarts)."""
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(np.asarray(features, np.float64))


def code_scores(
    features: np.ndarray, phenotypes: Sequence, n_clusters: int, *, seed: int = 0, folds: int = 5, neighbours: int = 5
) -> dict:
    """Cluster and phenotype scores of one representation.

    Args:
        features: (N, D) one row per subject.
        phenotypes: (N,) known labels (any hashable).
        n_clusters: k of k-means.
        folds, neighbours: stratified k-fold (at most the smallest class size) and k of the k-NN classifier.

    Returns:
        ``{"silhouette", "ari", "knn_accuracy", "clusters"}`` (clusters: the k-means labels as a list).
    """
    features = np.asarray(features, np.float64)
    phenotypes = np.asarray(phenotypes)
    labels = kmeans_labels(features, n_clusters, seed)
    silhouette = float(silhouette_score(features, labels)) if 1 < len(set(labels)) < len(labels) else float("nan")
    _, counts = np.unique(phenotypes, return_counts=True)
    n_folds = int(min(folds, counts.min()))
    if n_folds >= 2:
        n_train = len(phenotypes) - int(np.ceil(len(phenotypes) / n_folds))
        knn = KNeighborsClassifier(n_neighbors=int(min(neighbours, n_train)))
        cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        predicted = cross_val_predict(knn, features, phenotypes, cv=cv)
        knn_accuracy = float(np.mean(predicted == phenotypes))
    else:
        knn_accuracy = float("nan")
    return {
        "silhouette": silhouette,
        "ari": float(adjusted_rand_score(phenotypes, labels)),
        "knn_accuracy": knn_accuracy,
        "clusters": labels.tolist(),
    }


def gene_attribution(encoder: Callable[[torch.Tensor], torch.Tensor], genes: torch.Tensor, clusters: Sequence[int]) -> np.ndarray:
    """Gradient x input attribution of each gene to each code cluster, through the gene encoder.

    For cluster c with code centroid ``mu_c`` and overall mean code ``mu``, the score of subject i is the
    projection ``s_i = <phi(g_i), d_c>`` on the unit direction ``d_c = (mu_c - mu) / |mu_c - mu|``; the
    attribution of gene j is the mean over the cluster's members of ``g_ij * ds_i / dg_ij``: positive when
    the gene's value moves the subject's code towards its cluster.

    Args:
        encoder: (N, G) -> (N, D), e.g. ``generator.encode_genes``.
        genes: (N, G) gene profiles.
        clusters: (N,) cluster index per subject.

    Returns:
        (K, G) attribution, K = number of clusters (row c = cluster c).
    """
    clusters = np.asarray(clusters)
    genes = genes.detach().float()
    with torch.no_grad():
        codes = encoder(genes)
    mean = codes.mean(dim=0)
    rows = []
    for c in range(int(clusters.max()) + 1):
        members = torch.as_tensor(np.flatnonzero(clusters == c))
        if members.numel() == 0:
            rows.append(np.zeros(genes.shape[1]))
            continue
        direction = codes[members].mean(dim=0) - mean
        direction = direction / direction.norm().clamp_min(1e-12)
        g = genes[members].clone().requires_grad_(True)
        (encoder(g) @ direction).sum().backward()
        rows.append((g.grad * g.detach()).mean(dim=0).numpy())
    return np.stack(rows)


def top_genes(attribution_row: np.ndarray, gene_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` genes with the largest attribution (name, value), largest first."""
    order = np.argsort(-attribution_row)[:k]
    return [(str(gene_names[j]), float(attribution_row[j])) for j in order]


def nodule_features(image_hu: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float]) -> dict:
    """Image features of one nodule on one slice.

    Args:
        image_hu: (H, W) in HU.
        mask: (H, W) nodule mask (> 0).
        spacing_mm: pixel spacing along the two axes.

    Returns:
        ``diameter_mm`` (diameter of the circle of equal area), ``mean_hu`` inside the mask and
        ``margin_sharpness`` (mean gradient magnitude in HU/mm over the mask's boundary pixels); NaN for an
        empty mask.
    """
    mask = np.asarray(mask) > 0
    if not mask.any():
        return {"diameter_mm": float("nan"), "mean_hu": float("nan"), "margin_sharpness": float("nan")}
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    area = mask.sum() * sx * sy
    gx, gy = np.gradient(np.asarray(image_hu, np.float64), sx, sy)
    boundary = mask & ~ndimage.binary_erosion(mask)
    return {
        "diameter_mm": float(2.0 * np.sqrt(area / np.pi)),
        "mean_hu": float(np.asarray(image_hu)[mask].mean()),
        "margin_sharpness": float(np.hypot(gx, gy)[boundary].mean()),
    }


def plot_code_maps(
    embeddings: dict[str, np.ndarray], clusters: Sequence[int], phenotypes: Sequence, scores: dict[str, dict], path
) -> Path:
    """One t-SNE panel per representation; colour = cluster of the proposed code, marker = phenotype."""
    clusters = np.asarray(clusters)
    phenotypes = np.asarray(phenotypes)
    markers = "osD^vP*X"
    names = sorted(set(phenotypes.tolist()))
    fig, axes = plt.subplots(1, len(embeddings), figsize=(4.2 * len(embeddings), 4.2), squeeze=False)
    for ax, (title, xy) in zip(axes[0], embeddings.items(), strict=True):
        for p, name in enumerate(names):
            sel = phenotypes == name
            ax.scatter(xy[sel, 0], xy[sel, 1], c=clusters[sel], cmap="tab10", vmin=0, vmax=9,
                       marker=markers[p % len(markers)], s=28, edgecolors="k", linewidths=0.3, label=str(name))
        s = scores.get(title, {})
        ax.set_title(f"{title}\nsilhouette {s.get('silhouette', float('nan')):.2f}  ARI {s.get('ari', float('nan')):.2f}  "
                     f"k-NN {s.get('knn_accuracy', float('nan')):.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(title="phenotype (marker)", fontsize=7, title_fontsize=7, loc="best")
    fig.suptitle("t-SNE of gene representations; colour = k-means cluster of the proposed code", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return Path(path)


def plot_radiogenomic_map(rows: list[dict], path) -> Path:
    """Bar panels of the clusters' nodule features (mean, std) plus their top genes as text."""
    features = [("diameter_mm", "diameter (mm)"), ("mean_hu", "mean HU"), ("margin_sharpness", "margin sharpness (HU/mm)")]
    fig, axes = plt.subplots(1, len(features) + 1, figsize=(4.0 * (len(features) + 1), 3.8))
    labels = [f"cluster {r['cluster']}\n(n={r['num_subjects']})" for r in rows]
    for ax, (key, title) in zip(axes[:-1], features, strict=True):
        ax.bar(range(len(rows)), [r[key] for r in rows], yerr=[r.get(key + "_std", 0.0) for r in rows],
               color=[plt.cm.tab10(int(r["cluster"])) for r in rows], capsize=3)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title, fontsize=9)
    text = "\n\n".join(f"cluster {r['cluster']}: {r['top_genes'].replace(';', ', ')}" for r in rows)
    axes[-1].axis("off")
    axes[-1].text(0.0, 1.0, "top genes (gradient x input)\n\n" + text, va="top", fontsize=8, wrap=True)
    fig.suptitle("Radiogenomic map: gene-code clusters -> nodule image features and driving genes", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return Path(path)


def plot_follows_genes(models: dict[str, dict], path) -> Path:
    """Generated vs real nodule per gene profile: one row per model, columns diameter (mm) and mean HU; each point
    a profile (generated: mean over its outputs that contain a nodule; real: mean over the patient's slices),
    titled with Spearman's rho and its interval.

    Args:
        models: ``{model name: {"follows_genes": {"diameter_mm" | "mean_hu": {"generated": [P], "real": [P],
            "all": {"rho", "ci95"}}}}}`` (the evaluation's per-model report).
    """
    keys = [("diameter_mm", "diameter (mm)"), ("mean_hu", "mean HU")]
    fig, axes = plt.subplots(len(models), 2, figsize=(7.6, 3.6 * len(models)), squeeze=False)
    for r, (name, entry) in enumerate(models.items()):
        for c, (key, label) in enumerate(keys):
            ax = axes[r][c]
            data = entry["follows_genes"][key]
            real = np.asarray(data["real"], np.float64)
            generated = np.asarray(data["generated"], np.float64)
            ax.scatter(real, generated, s=22, c="tab:blue", edgecolors="k", linewidths=0.3)
            finite = np.isfinite(real) & np.isfinite(generated)
            if finite.any():
                lo = float(min(real[finite].min(), generated[finite].min()))
                hi = float(max(real[finite].max(), generated[finite].max()))
                ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
            stats = data["all"]
            ci = stats.get("ci95") or [float("nan"), float("nan")]
            ax.set_title(f"{name}: {label}\nSpearman {stats['rho']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]", fontsize=9)
            ax.set_xlabel(f"real {label}", fontsize=8)
            ax.set_ylabel(f"generated {label}", fontsize=8)
    fig.suptitle("Does the generated nodule follow its gene profile? (one point per profile)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return Path(path)
