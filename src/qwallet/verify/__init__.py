"""``qwallet verify``: run the reliability suites and regenerate ``docs/reliability.md``."""

from qwallet.verify.command import aggregate, render, verify

__all__ = ["aggregate", "render", "verify"]
