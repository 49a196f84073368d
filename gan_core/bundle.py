"""Which bundle a config belongs to, and that bundle's own code, the package ``scripts`` in its folder.

A bundle is one folder in the model zoo's layout: ``configs/`` (``metadata.json``, one config per step),
``scripts/`` (the code only this bundle uses), ``docs/``, ``LICENSE`` and, after its export step, ``models/``.
Its configs derive every path from ``bundle_root`` and name their own code ``scripts.<module>.<name>``::

    "imports": ["$from gan_core.bundle import scripts", "$import scripts.prepare", ...],
    "bundle_root": "$gan_core.bundle.root()",

Both come from where the config file is, never from where this library is installed: the bundle is the folder
above the config file's ``configs/`` folder (MONAI's own rule), found from the ``ConfigWorkflow`` that reads the
config (``python -m monai.bundle run``, ``torchrun``, ``monai.bundle.load``), else from ``--config_file`` on a
``python -m monai.bundle`` command line (``ckpt_export``), else from a ``bundle_root`` given to the parser
(the model zoo's checks pass one), else the bundle whose ``scripts`` the config's imports made active (a value read
from ``workflow.parser`` after ``initialize()``). MONAI puts a bundle's root on ``sys.path`` only when its workflow runs, after the
config's imports were evaluated, so a plain ``$import scripts`` fails when a command runs from another folder;
``from gan_core.bundle import scripts`` imports the config's own ``scripts`` wherever the command runs.

Every bundle calls its package ``scripts``. :func:`activate` makes one bundle's package the importable ``scripts``
and keeps the modules of the bundle it replaces, so that several bundles can take turns in one process (the tests
do) with each bundle's modules imported once: a module of one bundle never sees another bundle's ``scripts``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from gan_core.config import config_files_argument, under_bundle_cli
from gan_core.errors import BundleInputError, install_excepthook

PACKAGE = "scripts"
_STASHED: dict[Path, dict[str, ModuleType]] = {}  # bundle root -> its scripts modules, while another is active


def _bundle_above(config_folder: str | os.PathLike) -> Path:
    """MONAI's rule: a config folder named ``configs`` is inside its bundle; any other folder is the bundle."""
    folder = Path(config_folder).resolve()
    return folder.parent if folder.name == "configs" else folder


def bundle_of(config_file: str | os.PathLike) -> Path:
    """The bundle folder of a config file: the folder above ``configs/`` (or the file's own folder)."""
    return _bundle_above(Path(config_file).resolve().parent)


def _callers() -> Iterator[object]:
    """The ``self`` of every method further up the call stack, innermost first."""
    frame = sys._getframe(1)
    while frame is not None:
        if "self" in frame.f_locals:
            yield frame.f_locals["self"]
        frame = frame.f_back


def _workflow_bundle() -> Path | None:
    """The bundle of the MONAI ``ConfigWorkflow`` reading a config further up the call stack."""
    from monai.bundle import ConfigWorkflow

    for caller in _callers():
        if isinstance(caller, ConfigWorkflow) and hasattr(caller, "config_root_path"):
            return _bundle_above(caller.config_root_path)
    return None


def _command_line_bundle() -> Path | None:
    """The bundle of ``--config_file`` on a ``python -m monai.bundle ...`` command line."""
    if not under_bundle_cli(sys.argv):
        return None
    files = config_files_argument(sys.argv)
    return bundle_of(files[0]) if files else None


def _parser_bundle() -> Path | None:
    """A literal ``bundle_root`` (not an expression) of a MONAI config parser resolving further up the stack."""
    from monai.bundle.reference_resolver import ReferenceResolver

    for caller in _callers():
        if isinstance(caller, ReferenceResolver):
            item = caller.items.get("bundle_root")
            value = None if item is None else item.get_config()
            if isinstance(value, (str, os.PathLike)) and not str(value).startswith(("$", "@")):
                return Path(value).resolve()
    return None


def config_bundle() -> Path:
    """The bundle folder of the config being read (see the module docstring for the order of the rules).

    Raises:
        BundleInputError: no config of a bundle is being read (this is called outside MONAI's bundle commands
            without a ``bundle_root``).
    """
    for find in (_workflow_bundle, _command_line_bundle, _parser_bundle, active_bundle):
        folder = find()
        if folder is not None:
            return folder
    raise BundleInputError("cannot tell which bundle's config is being read", field="bundle_root",
                           hint="run it with python -m monai.bundle run <id> --config_file <bundle>/configs/<file>, "
                                "or pass bundle_root")


def root() -> str:
    """``bundle_root``: the folder of the bundle whose config is being read (absolute)."""
    return str(config_bundle())


def _bundle_of_module(module: ModuleType) -> Path | None:
    location = getattr(module, "__file__", None)
    return None if location is None else Path(location).resolve().parents[1]


def active_bundle() -> Path | None:
    """The bundle whose ``scripts`` is the importable one now, if any."""
    active = sys.modules.get(PACKAGE)
    return None if active is None else _bundle_of_module(active)


def bundle_name() -> str:
    """The active bundle's folder name (``radiogan_bundle``): what a synthetic DICOM names as its generator."""
    folder = active_bundle()
    if folder is None:
        raise BundleInputError("no bundle is active", field="bundle_root",
                               hint="run the command through a bundle config (python -m monai.bundle run ...)")
    return folder.name


def _stash_active() -> None:
    """Take the active bundle's ``scripts`` modules out of ``sys.modules``, keeping them for its next activation."""
    active = active_bundle()
    if active is not None:
        names = [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]
        _STASHED[active] = {name: sys.modules.pop(name) for name in names}


def activate(bundle: str | os.PathLike) -> ModuleType:
    """Make ``<bundle>/scripts`` the importable package ``scripts`` and return it.

    The bundle's root goes first on ``sys.path``; the modules of the bundle that was active are kept aside and come
    back (the same module objects) when that bundle is activated again.

    Raises:
        BundleInputError: the folder has no ``scripts/`` package.
    """
    bundle = Path(bundle).resolve()
    if not (bundle / PACKAGE / "__init__.py").is_file():
        raise BundleInputError("not a bundle folder: no scripts/__init__.py", path=bundle, field="bundle_root",
                               hint="pass the folder that holds configs/ and scripts/")
    if active_bundle() != bundle:
        _stash_active()
        sys.modules.update(_STASHED.pop(bundle, {}))
    if str(bundle) in sys.path:
        sys.path.remove(str(bundle))
    sys.path.insert(0, str(bundle))
    importlib.invalidate_caches()
    return importlib.import_module(PACKAGE)


def read_configs(bundle: str | os.PathLike, *config_files: str):
    """A MONAI ``ConfigParser`` of ``bundle``'s ``configs/<config_files>`` (merged in order) and its metadata, with
    ``bundle_root`` set to the folder: what a tool or the export step reads values and objects from outside a
    ``python -m monai.bundle`` command."""
    from monai.bundle import ConfigParser

    bundle = Path(bundle).resolve()
    parser = ConfigParser()
    parser.read_meta(bundle / "configs" / "metadata.json")
    parser.read_config([str(bundle / "configs" / name) for name in config_files])
    parser["bundle_root"] = str(bundle)
    return parser


def find_bundles(folder: str | os.PathLike) -> list[Path]:
    """The bundle folders directly inside ``folder`` (each with ``configs/metadata.json`` and ``scripts/``), sorted."""
    return sorted(path.parents[1] for path in Path(folder).glob("*/configs/metadata.json")
                  if (path.parents[1] / PACKAGE / "__init__.py").is_file())


def __getattr__(name: str) -> ModuleType:
    """``from gan_core.bundle import scripts``: the ``scripts`` package of the bundle whose config is being read."""
    if name != PACKAGE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if under_bundle_cli(sys.argv):  # one `error:` line, not MONAI's traceback, for a user's mistake
        install_excepthook()
    return activate(config_bundle())
