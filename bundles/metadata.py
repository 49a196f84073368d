"""A bundle's ``configs/metadata.json``: the package versions it needs and the evaluation numbers it reports.

``required_packages_version`` is derived, not typed: the modules a bundle's configs name (``$import ...`` and
``_target_`` values) and, transitively, everything those modules of this project import, mapped to their
installed distributions (this project's own ``gan-bundles`` included; MONAI, PyTorch and NumPy have their own
fields). ``eval_metrics`` is written from the numbers of the evaluation measured last.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path

from bundles import REPO_ROOT

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


def update_versions(bundle_dir: str | Path) -> dict:
    """Write the installed versions into the bundle's metadata.json; returns the new metadata."""
    from bundles.fileio import atomic_write_text

    path = Path(bundle_dir) / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    for module, key in OWN_FIELDS.items():
        meta[key] = _major_minor_patch(metadata.version(module))
    meta["required_packages_version"] = required_packages(bundle_dir)
    atomic_write_text(json.dumps(meta, indent=4) + "\n", path)
    return meta
