"""Shared library of the three GAN bundles: I/O, transforms, networks, losses, engines, evaluation, phantoms."""

import sys
from pathlib import Path

from bundles.errors import BundleInputError, install_excepthook

REPO_ROOT = Path(__file__).resolve().parents[1]


def bundle_names() -> list[str]:
    """The bundles of this repository, found by their folders: ``<name>_bundle/configs/metadata.json``."""
    return sorted(path.parents[1].name.removesuffix("_bundle") for path in REPO_ROOT.glob("*_bundle/configs/metadata.json"))


def bundle_root(name: str) -> str:
    """Absolute path of a bundle folder of this repository (``radiogenomic_bundle`` and so on).

    Configs use it as the default ``bundle_root`` so that ``python -m monai.bundle run`` works from any
    working directory; override ``--bundle_root`` for a bundle copied elsewhere.
    """
    return str(REPO_ROOT / name)


# Under `python -m monai.bundle ...` (which imports this package through the configs), a user's input error
# is reported as one line naming the file and field rather than a traceback through MONAI's config parser.
if Path(sys.argv[0]).parts[-3:] == ("monai", "bundle", "__main__.py"):
    install_excepthook()

__all__ = ["BundleInputError", "REPO_ROOT", "bundle_names", "bundle_root"]
