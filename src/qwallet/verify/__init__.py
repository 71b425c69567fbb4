"""``qwallet verify``: run the reliability suites and regenerate ``docs/reliability.md``."""

from qwallet.verify.command import aggregate, render, update_page, verify

__all__ = ["aggregate", "render", "update_page", "verify"]
