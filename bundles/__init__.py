"""Shared library of the three GAN bundles: I/O, transforms, networks, losses, engines, evaluation, phantoms."""

from pathlib import Path

from bundles.errors import BundleInputError

REPO_ROOT = Path(__file__).resolve().parents[1]


def bundle_root(name: str) -> str:
    """Absolute path of a bundle folder of this repository (``radiogenomic_bundle`` and so on).

    Configs use it as the default ``bundle_root`` so that ``python -m monai.bundle run`` works from any
    working directory; override ``--bundle_root`` for a bundle copied elsewhere.
    """
    return str(REPO_ROOT / name)


__all__ = ["BundleInputError", "REPO_ROOT", "bundle_root"]
