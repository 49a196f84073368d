"""Helpers for values that arrive from bundle configs and the ``python -m monai.bundle`` command line."""

from __future__ import annotations

from bundles.errors import BundleInputError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none", ""}


def as_flag(value: bool | int | str | None, key: str) -> bool:
    """A boolean setting from a config or the command line, where ``--amp false`` arrives as "false".

    Raises:
        BundleInputError: a string that is neither true nor false (``key`` names the setting).
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise BundleInputError(f"expected true or false, got {value!r}", field=key)
    return bool(value)
