"""The one-page summary of a radiogenomic evaluation (``summary.png``).

Panels: synthesis examples (each profile's real nodule, the background, the generated slices); the proposed gene
code's t-SNE; k-NN phenotype accuracy of each gene representation over CV shuffles beside its shuffled-label
null; generated vs real diameter and mean HU per profile; and the main numbers as text (Table 1 with the nodule
fraction, two-sample AUCs, gene- vs noise-swap sensitivity, the judge and controllability, the shared metrics on
nodule patches, which acceptance targets hold); the utility study's curve when it has run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan_core.evaluation.utility import numbers_panel
from gan_core.figures import plt, save_figure

__all__ = ["plot_summary", "summary_lines"]


def _mosaic(columns: list[tuple[str, torch.Tensor]]) -> tuple[np.ndarray, list[str]]:
    """Columns of (B, 1, S, S) images in [-1, 1] -> one (B * S, C * S) array in [0, 1] (rows = samples)."""
    rows = min(int(t.shape[0]) for _, t in columns)
    tiles = [[(t[r, 0].float().cpu().numpy().T[::-1] + 1.0) / 2.0 for _, t in columns] for r in range(rows)]
    return np.block(tiles), [name for name, _ in columns]


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _ci(ci, digits: int = 2) -> str:
    return "" if not ci else f" [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def summary_lines(report: dict, results: dict) -> list[str]:
    """The main numbers of an evaluation report as text lines (also what the summary page prints)."""
    lines = []
    for name, entry in report["models"].items():
        bg = entry["table1"]["background_region"]
        lines.append(f"{name}: background MSE {_fmt(bg['mse'], 4)}  SSIM {_fmt(bg['ssim'])}  PSNR(mean MSE) "
                     f"{_fmt(bg['psnr_of_mean_mse'], 1)} dB;  nodule in {_fmt(entry['nodules']['value'])}"
                     f"{_ci(entry['nodules']['ci95'])} of outputs")
        real = entry["realism"]
        lines.append(f"   two-sample AUC real vs generated: nodule patches {_fmt(real['nodule_patches']['auc'])}"
                     f"{_ci(real['nodule_patches']['ci95'])} (pasted real {_fmt(real['nodule_patches']['pasted_real'])}), "
                     f"with context {_fmt(real['context_patches']['auc'])} (pasted real "
                     f"{_fmt(real['context_patches']['pasted_real'])}), descriptors {_fmt(real['descriptors']['auc'])}"
                     f"{_ci(real['descriptors']['ci95'])}")
        f = entry["follows_genes"]
        lines.append(f"   Spearman(generated, real) diameter {_fmt(f['diameter_mm']['all']['rho'])}"
                     f"{_ci(f['diameter_mm']['all']['ci95'])}, mean HU {_fmt(f['mean_hu']['all']['rho'])}"
                     f"{_ci(f['mean_hu']['all']['ci95'])}")
        s = entry["swaps"]
        line = (f"   swaps: area noise/gene {_fmt(s['area_px']['noise_over_gene'])}, "
                f"HU noise/gene {_fmt(s['mean_hu']['noise_over_gene'])}")
        if "same_over_cross" in s["mean_hu"]:
            line += (f", HU same/cross phenotype {_fmt(s['mean_hu']['same_over_cross'])} "
                     f"(real {_fmt(s['mean_hu'].get('real_same_over_cross'))})")
        lines.append(line)
        if "controllability" in entry:
            c = entry["controllability"]
            lines.append(f"   controllability (judge on descriptors): class mean {_fmt(c['all']['class_mean'])}, "
                         f"chance {_fmt(c['chance'])}")
    if "judge" in report:
        lines.append(f"judge: leave-one-patient-out accuracy on real slices {_fmt(report['judge']['lopo_accuracy'])}")
    for name, comp in report.get("code_comparisons", {}).items():
        lines.append(f"{name}: k-NN difference {_fmt(comp['all']['difference'])}{_ci(comp['all']['ci95'])} (all), "
                     f"{_fmt(comp['heldout']['difference'])}{_ci(comp['heldout']['ci95'])} (held-out)")
    if results:
        parts = [f"{k} {_fmt(v['value'], 3)} (ref {_fmt((v.get('reference') or {}).get('value'), 3)})"
                 for k, v in results.items()]
        lines.append("nodule patches for held-out patients' inputs: " + "; ".join(parts[:5]))
        if len(parts) > 5:
            lines.append("   " + "; ".join(parts[5:]))
    holds = report.get("targets", {}).get("holds", {})
    if holds:
        lines.append("targets met: " + ", ".join(k for k, v in holds.items() if v))
        lines.append("targets missed: " + (", ".join(k for k, v in holds.items() if not v) or "none"))
    return lines


def plot_summary(report: dict, results: dict, examples: list[tuple[str, torch.Tensor]], embeddings: dict,
                 clusters, phenotypes, path, utility: dict | None = None) -> Path:
    """Write the one-page summary of the evaluation (see the module docstring); with ``utility`` (a utility
    study's result) its curve beside the numbers."""
    fig = plt.figure(figsize=(16, 13))
    grid = fig.add_gridspec(3, 3, height_ratios=[1.25, 1.0, 0.95])
    ax = fig.add_subplot(grid[0, :2])
    mosaic, names = _mosaic(examples)
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
    side = mosaic.shape[1] / len(names)
    ax.set_xticks([side * (i + 0.5) for i in range(len(names))])
    ax.set_xticklabels(names, fontsize=7, rotation=25, ha="right")
    ax.set_yticks([])
    ax.set_title("synthesis: one background, one row per gene profile", fontsize=10)

    ax = fig.add_subplot(grid[0, 2])
    xy = embeddings["proposed code"]
    phen = np.asarray(phenotypes)
    for i, name in enumerate(sorted(set(phen.tolist()))):
        sel = phen == name
        ax.scatter(xy[sel, 0], xy[sel, 1], c=np.asarray(clusters)[sel], cmap="tab10", vmin=0, vmax=9,
                   marker="osD^v"[i % 5], s=30, edgecolors="k", linewidths=0.3, label=name)
    ax.legend(fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("t-SNE of the proposed gene code\n(colour: k-means cluster, marker: phenotype)", fontsize=10)

    ax = fig.add_subplot(grid[1, 0])
    codes = report.get("gene_codes", {})
    names = [n for n in codes if "knn" in codes[n]]
    if names:
        means = [codes[n]["knn"]["mean"] for n in names]
        sds = [codes[n]["knn"]["sd"] for n in names]
        ax.bar(range(len(names)), means, yerr=sds, color=["0.6", "tab:orange", "tab:blue"][-len(names):], capsize=4)
        for i, n in enumerate(names):
            ax.hlines(codes[n]["null"]["knn"]["p95"], i - 0.4, i + 0.4, colors="r", linestyles="--")
            heldout = codes[n]["knn_heldout_transfer"]["accuracy"]
            ax.plot(i, heldout, "kx")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title("k-NN phenotype accuracy (mean, sd over CV shuffles)\nred: shuffled-label 95th pct; x: held-out",
                     fontsize=9)
    else:
        ax.text(0.5, 0.5, "no truth table: k-NN not computed", ha="center", va="center")
        ax.set_axis_off()

    for col, (key, label) in enumerate([("diameter_mm", "diameter (mm)"), ("mean_hu", "mean HU")], start=1):
        ax = fig.add_subplot(grid[1, col])
        for name, entry in report["models"].items():
            data = entry["follows_genes"][key]
            rho = data["all"]["rho"]
            ax.scatter(data["real"], data["generated"], s=20, edgecolors="k", linewidths=0.3,
                       label=f"{name} (rho {_fmt(rho)})")
        lims = ax.get_xlim()
        ax.plot(lims, lims, "k--", linewidth=0.7)
        ax.set_xlabel(f"real {label}", fontsize=8)
        ax.set_ylabel(f"generated {label}", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title(f"generated vs real {label}, one point per profile", fontsize=9)

    numbers_panel(fig, grid[2, :], summary_lines(report, results), utility, fontsize=8, beside=True)
    fig.suptitle("Radiogenomic evaluation", fontsize=12)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return Path(path)
