"""Utility studies: does adding synthetic images help a model trained on a few real ones?

A study trains one downstream model (RadioGAN: a five-class MIP classifier; ctstyle: a segmentation network)
in three **arms** on each of several **real-data sizes** and **seeds**:

- ``real``: the reduced real subset alone (train-real / test-real, TRTR);
- ``real+synthetic``: the same subset plus synthetic images from a GAN trained on that subset only;
- ``synthetic``: the synthetic images alone (train-synthetic / test-real, TSTR);
- ``real+null`` (where a study has a null): the same subset plus as many images made from it *without* a GAN
  by the simplest means that answers the same question (ctstyle: the subset's organ means painted on the same
  deformed maps; radiogenomic: the subset's own nodules pasted into the same kind of backgrounds). Its gain
  over ``real`` is what synthetic data of no skill gives; the GAN earns only what it adds over this null.

Every arm of one (size, seed) runs the same number of training steps from the same initialisation, and is
tested on the same held-out real images. This module holds what the three studies share: the nested
subset selection, the intervals over seeds, the summary and targets, the result file and the figure.

Intervals are over seeds (each seed draws its own subset, GAN and downstream initialisation): the Student-t
interval of the mean of the per-seed values; a gain and the TSTR / TRTR ratio are computed per seed first
(paired), so what the seeds share (subset, test set, initialisation) cancels.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from gan_core.bundle import PACKAGE, activate, active_bundle, bundle_of
from gan_core.errors import BundleInputError
from gan_core.evaluation.metrics import json_safe
from gan_core.figures import plt, save_figure
from gan_core.fileio import atomic_write_text
from gan_core.runs import run_info, write_run_info

__all__ = [
    "ARMS",
    "NULL_ARM",
    "RESULT_FILE",
    "TARGETS",
    "arm_counts",
    "arm_data",
    "check_sizes_fit",
    "check_study_settings",
    "check_targets",
    "numbers_panel",
    "paired_interval",
    "patient_splits",
    "plot_utility_curve",
    "read_utility_result",
    "save_utility_figure",
    "select_per_class",
    "segment",
    "select_patients",
    "snapshot_bundle",
    "summarise_runs",
    "t_interval",
    "train_segmenter",
    "train_with_config",
    "write_study",
    "write_utility_result",
]

ARMS: tuple[str, ...] = ("real", "real+synthetic", "synthetic")
NULL_ARM = "real+null"
RESULT_FILE = "utility.json"
# Issue 15's targets: at a size where the real-only model stays below `below`, adding synthetic data raises the
# measure by at least `gain` with an interval that excludes 0; TSTR reaches `tstr_ratio` of TRTR.
TARGETS: dict[str, float] = {"below": 0.85, "gain": 0.05, "tstr_ratio": 0.8}
_COLOURS = {"real": "tab:blue", "real+synthetic": "tab:orange", "synthetic": "tab:green", NULL_ARM: "tab:purple"}


# ---------------------------------------------------------------------------------------------- statistics
def t_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of per-seed values and its Student-t interval: ``mean +- t_{(1+level)/2, n-1} sd / sqrt(n)``.

    Returns ``{"mean", "ci95": [lo, hi] or None (fewer than two values), "sd", "n", "values"}``; NaN values
    (a seed whose run gave no number) are left out and counted in ``n`` only when finite.
    """
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    out: dict[str, Any] = {"mean": None, "ci95": None, "sd": None, "n": int(arr.size),
                           "values": [float(v) for v in values if v is not None]}
    if arr.size == 0:
        return out
    out["mean"] = float(arr.mean())
    if arr.size >= 2:
        sd = float(arr.std(ddof=1))
        half = float(stats.t.ppf((1 + level) / 2, arr.size - 1)) * sd / math.sqrt(arr.size)
        out["sd"], out["ci95"] = sd, [out["mean"] - half, out["mean"] + half]
    return out


def paired_interval(a: Sequence[float], b: Sequence[float], how: str = "difference", level: float = 0.95) -> dict:
    """Interval of a per-seed comparison of paired values: ``b - a`` (``"difference"``) or ``b / a`` (``"ratio"``)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    if how == "difference":
        per_seed = [y - x for x, y in zip(a, b, strict=True)]
    elif how == "ratio":
        per_seed = [y / x if x else float("nan") for x, y in zip(a, b, strict=True)]
    else:
        raise ValueError(f"unknown comparison {how!r}")
    return t_interval(per_seed, level)


# ------------------------------------------------------------------------------------------------- subsets
def select_per_class(labels: Sequence[int], n_per_class: int, seed: int) -> list[int]:
    """Indices of ``n_per_class`` items of every class, nested across sizes: for one seed each class's items
    are put in one random order and the first ``n_per_class`` taken, so the subset of size 2 lies inside the
    subset of size 4. Returned sorted.

    Raises:
        BundleInputError: a class with fewer than ``n_per_class`` items (after leaving one for testing).
    """
    labels = np.asarray(labels, dtype=np.int64)
    chosen: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size <= n_per_class:
            raise BundleInputError(f"class {int(c)} has {members.size} training items, too few for {n_per_class} per "
                                   "class and a held-out test image", field="sizes_per_class",
                                   hint=f"choose sizes below {members.size}, or prepare more studies")
        rng = np.random.default_rng([int(seed), int(c)])
        chosen += members[rng.permutation(members.size)[:n_per_class]].tolist()
    return sorted(int(i) for i in chosen)


def check_sizes_fit(patients: Sequence[str], sizes: Sequence[int]) -> None:
    """Check that subsets of every size in ``sizes`` leave at least one of ``patients`` (IDs) for testing.

    Raises:
        BundleInputError: the largest size is not below the number of distinct patients.
    """
    n, k = len(set(patients)), max(int(s) for s in sizes)
    if n <= k:
        raise BundleInputError(f"{n} training patients, too few for subsets of {k} and a held-out test patient",
                               field="sizes", hint=f"choose sizes below {n}")


def select_patients(patients: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` patients of ``patients`` (distinct IDs), nested across sizes for one seed; returned sorted.

    Raises:
        BundleInputError: fewer than ``k + 1`` patients (one must remain for testing).
    """
    check_sizes_fit(patients, [k])
    unique = sorted(set(patients))
    order = np.random.default_rng([int(seed), 7]).permutation(len(unique))
    return sorted(unique[i] for i in order[:k])


def patient_splits(patients: Sequence[str], sizes: Sequence[int], seed: int) -> tuple[dict[int, list[str]], list[str]]:
    """For one seed: ``{size: patients of the subset}`` (nested, :func:`select_patients`) and the patients outside
    the largest subset, left for testing (sorted)."""
    subsets = {int(k): select_patients(patients, int(k), seed) for k in sizes}
    used = set(subsets[max(subsets)])
    return subsets, sorted(p for p in set(patients) if p not in used)


# ------------------------------------------------------------------------------------------ settings, GANs
def check_study_settings(settings: Mapping[str, Any], smallest_size: int = 1) -> None:
    """Check a utility study's settings before any work (its config's ``initialize``).

    Rules by name: ``sizes...`` a list of distinct increasing integers >= ``smallest_size`` (ctstyle: 0, a
    subset of the style slice alone); ``seeds`` a list of at least two
    distinct integers >= 0 (an interval needs two; issue 15 asks for three or more); ``..._share`` a number in
    [0, 1); ``..._px`` a number >= 0; ``...features`` six integers >= 1; every other setting an integer >= 1.

    Raises:
        BundleInputError: the first setting that breaks its rule.
    """
    for key, value in settings.items():
        def bad(rule: str, hint: str, key: str = key, value: Any = value) -> BundleInputError:
            return BundleInputError(f"must be {rule}, got {value!r}", field=key, hint=hint)

        if key.startswith("sizes"):
            ok = (isinstance(value, (list, tuple)) and value and all(_is_int(v, smallest_size) for v in value)
                  and all(a < b for a, b in zip(value, value[1:], strict=False)))
            if not ok:
                raise bad(f"a list of increasing integers >= {smallest_size}", f'pass --{key} "[2, 4]"')
        elif key == "seeds":
            if not (isinstance(value, (list, tuple)) and len(set(value)) == len(value) >= 2
                    and all(_is_int(v, 0) for v in value)):
                raise bad("a list of at least two distinct integers >= 0", f'pass --{key} "[0, 1, 2]"')
        elif key.endswith("_share"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise bad("a number in [0, 1)", f"pass --{key} 0.5")
        elif key.endswith("_px"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise bad("a number >= 0 (pixels)", f"pass --{key} 3.0")
        elif key.endswith("features"):
            if not (isinstance(value, (list, tuple)) and len(value) == 6 and all(_is_int(v, 1) for v in value)):
                raise bad("six integers >= 1 (BasicUNet's features)", f'pass --{key} "[8, 16, 32, 64, 64, 8]"')
        elif not _is_int(value, 1):
            raise bad("an integer >= 1", f"pass --{key} with a whole number of at least 1")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def snapshot_bundle(work: str | Path, *config_files: str | Path) -> list[Path]:
    """Copy each of ``config_files``, with the ``metadata.json`` and ``logging.conf`` beside it, into ``work /
    "configs"``, and their bundle's ``scripts/`` into ``work / "scripts"``; returns the copied configs' paths in order.
    A study reads its configs and code once, at its start: an edit made while it runs does not reach its later GANs,
    and its output keeps the configs and code they were trained with (``work`` is a bundle folder of its own).

    Raises:
        BundleInputError: a config file that does not exist.
    """
    folder = Path(work) / "configs"
    folder.mkdir(exist_ok=True)
    copies = []
    for config_file in config_files:
        source = Path(config_file)
        if not source.is_file():
            raise BundleInputError("no such config file", path=source,
                                   hint="pass the bundle's own configs/train.json (or prepare.json), or leave it unset")
        for companion in ("metadata.json", "logging.conf"):
            if (source.parent / companion).is_file() and not (folder / companion).exists():
                shutil.copy2(source.parent / companion, folder / companion)
        copies.append(Path(shutil.copy2(source, folder / source.name)))
        code = bundle_of(source) / PACKAGE
        if code.is_dir() and not (Path(work) / PACKAGE).exists():
            shutil.copytree(code, Path(work) / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    return copies


def train_with_config(config_file: str | Path, output_dir: str | Path, overrides: Mapping[str, Any]) -> Path:
    """Train a GAN with a bundle's own ``train.json`` (run id ``training``) in this process, as ``python -m
    monai.bundle run training --config_file ... --output_dir ... --key value ...`` would; returns the path
    of the run's ``checkpoints/checkpoint_latest.pt``.

    Args:
        config_file: the bundle's train.json.
        output_dir: the training's output folder (its checkpoints, sample grids, ``run_info.json``).
        overrides: config ids -> values, e.g. ``{"train#dataset#data": [...], "train#trainer#max_epochs": 3}``.
    """
    from monai.bundle import ConfigWorkflow

    caller = active_bundle()
    try:
        workflow = ConfigWorkflow(config_file=str(config_file), workflow_type=None, run_id="training",
                                  **{**overrides, "output_dir": str(output_dir)})
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    finally:
        if caller is not None:  # the config's bundle (a snapshot of the caller's) was active while it trained
            activate(caller)
    return Path(output_dir) / "checkpoints" / "checkpoint_latest.pt"


def arm_data(arm: str, real: tuple[torch.Tensor, torch.Tensor], synthetic: tuple[torch.Tensor, torch.Tensor],
             synthetic_share: float, null: tuple[torch.Tensor, torch.Tensor] | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(inputs, targets, sampling weights or None) of one arm from (inputs, targets) of the real subset and of
    the synthetic set. In ``real+synthetic`` the real items together get the weight ``1 - synthetic_share``
    and the synthetic ones ``synthetic_share``, whatever their counts (a trainer drawing batches with these
    weights sees about that share of synthetic items). :data:`NULL_ARM` mixes the ``null`` set in the same way."""
    if arm == NULL_ARM:
        if null is None:
            raise ValueError(f"the {NULL_ARM} arm needs the null set")
        return arm_data("real+synthetic", real, null, synthetic_share)
    if arm == "real":
        return real[0], real[1], None
    if arm == "synthetic":
        return synthetic[0], synthetic[1], None
    if arm != "real+synthetic":
        raise ValueError(f"unknown arm {arm!r}")
    n_real, n_syn = real[0].shape[0], synthetic[0].shape[0]
    weights = torch.cat([torch.full((n_real,), (1 - synthetic_share) / n_real, dtype=torch.float64),
                         torch.full((n_syn,), synthetic_share / n_syn, dtype=torch.float64)])
    return torch.cat([real[0], synthetic[0]]), torch.cat([real[1], synthetic[1]]), weights


def arm_counts(arm: str, num_real: int, inputs: torch.Tensor) -> dict[str, int]:
    """``{"train_real", "train_synthetic"}``: how many real and how many other (synthetic or null) items an arm's
    ``inputs`` (from :func:`arm_data`, real items first) hold, for a subset of ``num_real`` real items."""
    real = 0 if arm == "synthetic" else int(num_real)
    return {"train_real": real, "train_synthetic": int(inputs.shape[0]) - real}


# ------------------------------------------------------------------------------------- segmentation arms
def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    steps: int,
    weights: torch.Tensor | None = None,
    batch_size: int = 8,
    features: Sequence[int] = (8, 16, 32, 64, 64, 8),
    lr: float = 3e-3,
    max_shift: int = 4,
    flips: bool = False,
    noise: float = 0.05,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Train a MONAI ``BasicUNet`` (1 channel in, one logit per class out; Dice + cross-entropy, Adam) for exactly
    ``steps`` minibatches: the downstream model of the segmentation studies (ctstyle: organs, radiogenomic: the
    nodule).

    Args:
        images: (N, 1, H, W) CTs in [-1, 1]; labels: (N, 1, H, W) int64 class indices in [0, num_classes).
        steps: minibatches of ``batch_size`` pairs, drawn with replacement proportionally to ``weights``
            (default uniform): equal ``steps`` give equal updates whatever the data size.
        max_shift: random circular shift (pixels, both axes, the same for CT and labels) per batch.
        flips: also flip both axes at random per batch.
        noise: largest standard deviation of the Gaussian noise added to a CT (drawn per image), so that
            the network does not key on one scanner's noise level.
        seed: the initialisation and every random draw.

    Returns:
        the network in eval mode.
    """
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=int(num_classes), features=tuple(features))
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    p = torch.ones(images.shape[0], dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    for _ in range(int(steps)):
        idx = torch.multinomial(p, batch_size, replacement=True, generator=gen)
        x, y = images[idx], labels[idx]
        if max_shift > 0:
            s0, s1 = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
            x, y = torch.roll(x, (s0, s1), dims=(2, 3)), torch.roll(y, (s0, s1), dims=(2, 3))
        if flips:
            axes = [d for d, f in zip((2, 3), torch.rand(2, generator=gen).tolist(), strict=True) if f < 0.5]
            if axes:
                x, y = torch.flip(x, axes), torch.flip(y, axes)
        if noise > 0:
            sigma = torch.rand(batch_size, 1, 1, 1, generator=gen) * noise
            x = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
    return net.eval()


@torch.no_grad()
def segment(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """(N, 1, H, W) images -> (N, 1, H, W) int64 class of the largest logit, in batches."""
    device = next(net.parameters()).device
    return torch.cat([net(images[s : s + batch_size].to(device)).argmax(1, keepdim=True).cpu()
                      for s in range(0, images.shape[0], batch_size)])


# ------------------------------------------------------------------------------------------ summary, targets
def summarise_runs(runs: Sequence[Mapping], sizes: Sequence[int], seeds: Sequence[int]) -> dict:
    """Per size: every arm's interval over seeds, the paired gain of adding synthetic data and TSTR / TRTR.

    Args:
        runs: ``{"size", "seed", "arm", "value", ...}`` records, one per (size, seed, arm).

    Returns:
        ``{str(size): {"real": t_interval, "real+synthetic": ..., "synthetic": ..., "gain": paired
        difference (real+synthetic - real), "tstr_ratio": paired ratio (synthetic / real)}}``; when the runs
        hold the :data:`NULL_ARM`, also its interval, ``"gain_null"`` (real+null - real) and
        ``"gain_over_null"`` (real+synthetic - real+null), both paired.
    """
    value = {(int(r["size"]), int(r["seed"]), r["arm"]): float(r["value"]) for r in runs}
    names = ARMS + ((NULL_ARM,) if any(r["arm"] == NULL_ARM for r in runs) else ())
    summary = {}
    for size in sizes:
        arms = {arm: [value.get((int(size), int(s), arm), float("nan")) for s in seeds] for arm in names}
        entry = {arm: t_interval(v) for arm, v in arms.items()}
        entry["gain"] = paired_interval(arms["real"], arms["real+synthetic"], "difference")
        entry["tstr_ratio"] = paired_interval(arms["real"], arms["synthetic"], "ratio")
        if NULL_ARM in arms:
            entry["gain_null"] = paired_interval(arms["real"], arms[NULL_ARM], "difference")
            entry["gain_over_null"] = paired_interval(arms[NULL_ARM], arms["real+synthetic"], "difference")
        summary[str(size)] = entry
    return summary


def check_targets(summary: Mapping[str, Mapping], targets: Mapping[str, float] = TARGETS) -> dict:
    """Which of issue 15's utility targets hold.

    ``gain``: at some size whose real-only mean is below ``targets["below"]``, the mean gain is at least
    ``targets["gain"]`` and its interval lies above 0 (the sizes where it holds are listed). ``tstr``: at
    every size, the mean TSTR / TRTR ratio is at least ``targets["tstr_ratio"]``.
    """
    gain_sizes = [size for size, e in summary.items()
                  if e["real"]["mean"] is not None and e["real"]["mean"] < targets["below"]
                  and e["gain"]["mean"] is not None and e["gain"]["mean"] >= targets["gain"]
                  and e["gain"]["ci95"] is not None and e["gain"]["ci95"][0] > 0]
    below = [size for size, e in summary.items() if e["real"]["mean"] is not None and e["real"]["mean"] < targets["below"]]
    tstr = [e["tstr_ratio"]["mean"] for e in summary.values()]
    return {
        "gain": bool(gain_sizes),
        "gain_sizes": gain_sizes,
        "sizes_with_real_below": below,
        "tstr": bool(tstr) and all(v is not None and v >= targets["tstr_ratio"] for v in tstr),
    }


def write_utility_result(folder: str | Path, result: Mapping) -> Path:
    """Write ``folder/utility.json`` atomically (NaN -> null)."""
    path = Path(folder) / RESULT_FILE
    atomic_write_text(json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n", path)
    return path


def write_study(work: Path, result: dict, *, kind: str, settings: Mapping | None, datalist: Path, seed: int,
                started: tuple[float, float]) -> dict:
    """Finish a study in its work folder: ``result`` (design, runs, gans, summary) completed with the targets,
    whether they hold and the time since ``started`` (``time.perf_counter()``, ``time.process_time()``), written
    as ``utility.json``, ``utility.png`` and ``run_info.json``; returns the completed result."""
    result = {**result, "targets": TARGETS, "passed": check_targets(result["summary"]),
              "time": {"wall_s": time.perf_counter() - started[0], "cpu_s": time.process_time() - started[1],
                       "torch_threads": torch.get_num_threads()}}
    write_utility_result(work, result)
    save_utility_figure(result, work / "utility.png")
    write_run_info(work, run_info(kind, settings=settings, datalist=datalist, seed=seed))
    return result

def read_utility_result(folder: str | Path | None) -> dict | None:
    """The result of a finished utility study in ``folder`` (its ``utility.json``), or None when there is none."""
    if folder is None:
        return None
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError as err:
        raise BundleInputError(f"not valid JSON ({err})", path=path, hint="run the utility command again") from err
    if not isinstance(result, dict) or "summary" not in result:
        raise BundleInputError("not a utility result (no 'summary')", path=path, hint="run the utility command again")
    return result



# ------------------------------------------------------------------------------------------------- figure
def plot_utility_curve(ax, result: Mapping) -> None:
    """Draw the utility curve on ``ax``: the measure (mean over seeds, 95 % interval as error bars) against the
    real-data size, one line per arm (real: blue, real + synthetic: orange, synthetic only: green, real + null:
    purple, where the study has one). The sizes stand evenly spaced, labelled with their value (ctstyle's start at
    0, which a log axis cannot show)."""
    sizes = [int(s) for s in result["sizes"]]
    summary = result["summary"]
    offsets = {"real": -0.09, "real+synthetic": -0.03, "synthetic": 0.03, NULL_ARM: 0.09}
    for arm in [a for a in (*ARMS, NULL_ARM) if all(a in summary[str(s)] for s in sizes)]:
        xs, ys, err = [], [], []
        for position, size in enumerate(sizes):
            entry = summary[str(size)][arm]
            if entry["mean"] is None:
                continue
            lo, hi = entry["ci95"] or (entry["mean"], entry["mean"])
            xs.append(position + offsets[arm])
            ys.append(entry["mean"])
            err.append((entry["mean"] - lo, hi - entry["mean"]))
        if xs:
            e = np.asarray(err).T
            ax.errorbar(xs, ys, yerr=e, marker="o", capsize=3, color=_COLOURS[arm], label=arm)
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    ax.set_xlabel(f"real data ({result.get('size_unit', 'size')})", fontsize=8)
    ax.set_ylabel(result.get("measure", "value"), fontsize=8)
    ax.axhline(TARGETS["below"], color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=7)
    ax.set_title(f"utility on held-out real images ({len(result['seeds'])} seeds, 95 % CI)", fontsize=8)


def numbers_panel(fig, slot, lines: Sequence[str], utility: Mapping | None, fontsize: int = 7,
                  beside: bool = False) -> None:
    """Fill ``slot`` (a gridspec cell of a bundle's ``summary.png``) with the main numbers as monospace text and,
    when a utility study's result exists, its curve below them (``beside``: to their right, for a wide slot;
    else a line saying how to get one)."""
    shape = {"nrows": 1, "ncols": 2, "width_ratios": [2, 1]} if beside else {"nrows": 2, "ncols": 1,
                                                                           "height_ratios": [1.1, 1]}
    inner = slot.subgridspec(**shape) if utility else None
    ax = fig.add_subplot(inner[0] if utility else slot)
    if not utility:
        lines = [*lines, "utility: no result yet (run the `utility` command, then evaluate again)"]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=fontsize, family="monospace")
    ax.set_axis_off()
    if utility:
        plot_utility_curve(fig.add_subplot(inner[1]), utility)


def save_utility_figure(result: Mapping, path: str | Path) -> Path:
    """The utility curve (:func:`plot_utility_curve`) beside a table of the gains and TSTR ratios, as a PNG."""
    fig, (ax, text) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    plot_utility_curve(ax, result)
    lines = [f"{result.get('measure', 'value')} on held-out real images"]
    for size in result["sizes"]:
        e = result["summary"][str(size)]
        lines.append(f"size {size}: real {_fmt(e['real'])}")
        lines.append(f"  + synthetic {_fmt(e['real+synthetic'])}, gain {_fmt(e['gain'], signed=True)}")
        lines.append(f"  synthetic only {_fmt(e['synthetic'])}, TSTR/TRTR {_fmt(e['tstr_ratio'])}")
        if NULL_ARM in e:
            lines.append(f"  + null {_fmt(e[NULL_ARM])}, gain {_fmt(e['gain_null'], signed=True)}")
            lines.append(f"  synthetic over null {_fmt(e['gain_over_null'], signed=True)}")
    passed = result.get("passed", {})
    lines.append(f"targets: gain {'met' if passed.get('gain') else 'missed'}, TSTR {'met' if passed.get('tstr') else 'missed'}")
    text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7.5, family="monospace")
    text.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def _fmt(entry: Mapping, signed: bool = False) -> str:
    if entry.get("mean") is None:
        return "-"
    sign = "+" if signed else ""
    ci = entry.get("ci95")
    return f"{entry['mean']:{sign}.3f}" + (f" [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]" if ci else "")
