"""A bundle's ``configs/metadata.json``: the package versions it needs and the evaluation numbers it reports.

``required_packages_version`` is derived, not typed: the modules a bundle's configs name (``$import ...`` and
``_target_`` values) and, transitively, everything those modules of this project import, mapped to their
installed distributions (this project's own ``gan-bundles`` included; MONAI, PyTorch and NumPy have their own
fields). ``eval_metrics`` is written from the ``metrics.json`` of the evaluation measured last: the value of
every shared metric the bundle's ``evaluate.json`` lists (``metrics``) and the bundle's own headline numbers,
named with their dotted paths in ``metrics.json`` by ``evaluate.json``'s ``eval_metrics`` entry.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bundles import REPO_ROOT
from bundles.errors import BundleInputError

OWN_FIELDS = {"monai": "monai_version", "torch": "pytorch_version", "numpy": "numpy_version"}
PROJECT_DISTRIBUTION = "gan-bundles"


def _config_modules(configs: Path) -> set[str]:
    """Dotted module names the configs of a bundle import or instantiate."""
    modules = set()
    for path in configs.glob("*.json"):
        text = path.read_text()
        modules |= set(re.findall(r"\$import ([A-Za-z_][\w.]*)", text))
        for target in re.findall(r'"_target_":\s*"([\w.]+)"', text):
            modules.add(target.rsplit(".", 1)[0] if "." in target else "monai")
        modules |= {m.rsplit(".", 1)[0] for m in re.findall(r'"builder":\s*"([\w.]+)"', text)}
        modules |= set(re.findall(r"\$?(bundles(?:\.\w+)+)\.\w+\(", text))
    return modules


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (REPO_ROOT.joinpath(*parts).with_suffix(".py"), REPO_ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def third_party_modules(bundle_dir: Path) -> set[str]:
    """Top-level third-party modules a bundle needs: from its configs, through this project's modules."""
    todo, seen, third = sorted(_config_modules(bundle_dir / "configs")), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top == "bundles":
            path = _module_file(name)
            if path is not None:
                todo.extend(_imports(path) | {name.rsplit(".", 1)[0]} if "." in name else _imports(path))
        elif top not in sys.stdlib_module_names and top != "__future__":
            third.add(top)
    return third


def required_packages(bundle_dir: str | Path) -> dict[str, str]:
    """``{distribution: installed version}`` for ``required_packages_version``."""
    distributions = metadata.packages_distributions()
    required = {PROJECT_DISTRIBUTION: metadata.version(PROJECT_DISTRIBUTION)}
    for module in third_party_modules(Path(bundle_dir)):
        if module in OWN_FIELDS:
            continue
        dists = distributions.get(module, [])
        for dist in [module] if module in dists else dists:  # mlflow, not also mlflow-skinny / -tracing
            required[dist] = metadata.version(dist)
    return dict(sorted(required.items()))


def _major_minor_patch(version: str) -> str:
    return version.split("+")[0]


def _lookup(results: dict, dotted: str, source: Path):
    value: Any = results
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BundleInputError(f"no entry {dotted!r} (missing {part!r})", path=source,
                                   hint="run the bundle's evaluation with the current code, or fix eval_metrics in "
                                        "configs/evaluate.json")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleInputError(f"entry {dotted!r} is {value!r}, not a number", path=source,
                               hint="point eval_metrics in configs/evaluate.json at a numeric entry")
    return value


def measured_eval_metrics(bundle_dir: str | Path, metrics_file: str | Path) -> dict[str, float]:
    """``eval_metrics`` from an evaluation's ``metrics.json``: every listed shared metric's value (those the
    evaluation could not compute, null in the file, are left out) and the headline numbers named in
    ``evaluate.json``'s ``eval_metrics`` (``{name: dotted path}``), rounded to 4 significant digits."""
    evaluate = json.loads((Path(bundle_dir) / "configs" / "evaluate.json").read_text())
    source = Path(metrics_file)
    try:
        results = json.loads(source.read_text())
    except (OSError, ValueError) as err:
        raise BundleInputError(f"cannot read the evaluation's metrics ({err})", path=source,
                               hint="run the bundle's evaluation first (make demo runs it)") from None
    measured = {name: _lookup(results, path, source) for name, path in evaluate.get("eval_metrics", {}).items()}
    for name in evaluate.get("metrics", []):
        value = results.get("metrics", {}).get(name, {}).get("value")
        if value is not None:
            measured[name] = value
    return {name: float(f"{value:.4g}") for name, value in measured.items()}


def update_metadata(bundle_dir: str | Path, metrics_file: str | Path | None = None, note: str = "") -> dict:
    """Write the installed versions, and when ``metrics_file`` is given the measured ``eval_metrics`` (with
    ``note`` saying where they come from), into the bundle's metadata.json; returns the new metadata."""
    from bundles.fileio import atomic_write_text

    path = Path(bundle_dir) / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    for module, key in OWN_FIELDS.items():
        meta[key] = _major_minor_patch(metadata.version(module))
    meta["required_packages_version"] = required_packages(bundle_dir)
    if metrics_file is not None:
        meta["eval_metrics"] = {**measured_eval_metrics(bundle_dir, metrics_file), "note": note}
    atomic_write_text(json.dumps(meta, indent=4) + "\n", path)
    return meta
