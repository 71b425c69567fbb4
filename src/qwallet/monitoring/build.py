"""The version of the installed package (``/healthz``, ``qwallet_build_info``)."""

from __future__ import annotations

from functools import cache
from importlib import metadata


@cache
def version() -> str:
    """From the package metadata: the version that was installed, not a constant in the code."""
    try:
        return metadata.version("qwallet")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
