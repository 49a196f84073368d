"""What each bundle imports: the modules its configs name and its ``scripts/`` import, followed through the core.

    python tools/bundle_imports.py [--root .]    # every core module and the bundles that use it

``configs/metadata.json``'s ``required_packages_version`` (``tools/update_metadata.py``) and the layout tests read the
same answer: a bundle's third-party packages, the core modules it uses (directly or through other core modules), and
imports its ``scripts/`` must not make (another bundle's code, or ``scripts`` by its absolute name, which is whichever
bundle is active).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gan_core
from gan_core.bundle import PACKAGE, find_bundles

CORE = "gan_core"
CORE_DIR = Path(gan_core.__file__).resolve().parent


@dataclass
class BundleImports:
    """The imports of one bundle: ``core`` (dotted core modules, transitively), ``third_party`` (top-level module
    names), ``scripts`` (its own modules) and ``forbidden`` (``file: import`` lines its scripts must not hold)."""

    core: set[str] = field(default_factory=set)
    third_party: set[str] = field(default_factory=set)
    scripts: set[str] = field(default_factory=set)
    forbidden: list[str] = field(default_factory=list)


def config_modules(configs: Path) -> set[str]:
    """Dotted module names a bundle's configs import, instantiate or call (``$import``, ``_target_``, ``builder``,
    ``$module.function(`` expressions)."""
    modules = set()
    for path in configs.glob("*.json"):
        text = path.read_text()
        modules |= set(re.findall(r"\$import ([A-Za-z_][\w.]*)", text))
        modules |= set(re.findall(r"\$from ([A-Za-z_][\w.]*) import", text))
        for target in re.findall(r'"_target_":\s*"([\w.]+)"', text):
            modules.add(target.rsplit(".", 1)[0] if "." in target else "monai")
        modules |= {m.rsplit(".", 1)[0] for m in re.findall(r'"builder":\s*"([\w.]+)"', text)}
        modules |= {m.rsplit(".", 1)[0] for m in re.findall(rf"(?<![\w.@])((?:{CORE}|{PACKAGE})(?:\.\w+)+)\(", text)}
    return modules


def _imports(path: Path, package: str) -> tuple[set[str], list[str]]:
    """The absolute dotted names a module imports (relative imports resolved inside ``package``), and the imports a
    bundle's scripts must not make: one leaving ``scripts/`` (``from .. import``) or naming ``scripts`` absolutely."""
    names, wrong = set(), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
            wrong += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                wrong.append(f"from {'.' * node.level}{node.module or ''} import ...")
                continue
            if node.level == 0 and node.module.split(".")[0] == PACKAGE:
                wrong.append(f"from {node.module} import ... (use a relative import)")
            module = (package if not node.module else f"{package}.{node.module}") if node.level else node.module
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names, wrong


def _core_file(name: str) -> Path | None:
    """The file of a core module (``gan_core.io`` -> io/__init__.py), or None for a name inside a module."""
    folder = CORE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def core_modules() -> set[str]:
    """Every module of the core, dotted (``gan_core.io.dicom_series``; packages by their own name)."""
    names = set()
    for path in CORE_DIR.rglob("*.py"):
        parts = path.relative_to(CORE_DIR).with_suffix("").parts
        names.add(".".join((CORE, *parts[:-1])) if parts[-1] == "__init__" else ".".join((CORE, *parts)))
    return names


def bundle_imports(bundle: str | Path) -> BundleImports:
    """Follow a bundle's configs and scripts through its own modules and the core's."""
    bundle = Path(bundle)
    result = BundleImports()
    todo = sorted(config_modules(bundle / "configs"))
    for path in sorted((bundle / PACKAGE).glob("*.py")):
        names, wrong = _imports(path, PACKAGE)
        todo += sorted(names)
        wrong += [f"import {name}" for name in sorted(names) if name.split(".")[0].endswith("_bundle")]
        result.forbidden += [f"{path.relative_to(bundle)}: {line}" for line in wrong]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top == CORE:
            path = _core_file(name)
            if path is None:  # a name inside a module: ``gan_core.config.check_settings``
                todo.append(name.rsplit(".", 1)[0])
                continue
            result.core.add(name)
            package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            todo += sorted(_imports(path, package)[0]) + ([package] if package != name else [])
        elif top == PACKAGE:
            if name != PACKAGE and (bundle / PACKAGE / f"{name.split('.')[1]}.py").is_file():
                result.scripts.add(".".join(name.split(".")[:2]))
        elif top not in sys.stdlib_module_names and top != "__future__":
            result.third_party.add(top)
    return result


def core_users(root: str | Path) -> dict[str, list[str]]:
    """``{core module: [bundle folder names that use it]}`` for the bundles found in ``root``."""
    users: dict[str, list[str]] = {name: [] for name in sorted(core_modules())}
    for bundle in find_bundles(root):
        for name in bundle_imports(bundle).core:
            users.setdefault(name, []).append(bundle.name)
    return users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="folder holding the bundles")
    args = parser.parse_args()
    for name, bundles in core_users(args.root).items():
        print(f"{name:45s} {', '.join(bundles) or '-'}")


if __name__ == "__main__":
    main()
