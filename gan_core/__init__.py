"""The core the GAN bundles share: DICOM / NIfTI I/O, crash-safe files, errors and settings checks, run and model
records, export, the adversarial trainer base, handlers, tracking, the metric registry, the utility-study helpers,
figures and the demo cohorts' shared parts. A bundle's own code lives in its folder (``<name>_bundle/scripts``);
:mod:`gan_core.bundle` tells which bundle a config belongs to and imports its ``scripts``."""

from gan_core.errors import BundleInputError

__all__ = ["BundleInputError"]
