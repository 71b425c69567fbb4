"""The hold resolver (spec §3): asks partners about withdrawals still pending after the window.

See ``docs/hold-resolver.md``.
"""

from qwallet.resolver._resolver import (
    RESOLUTIONS,
    HoldResolver,
    Outcome,
    PartnerAnswer,
    backoff_s,
    running,
)

__all__ = ["RESOLUTIONS", "HoldResolver", "Outcome", "PartnerAnswer", "backoff_s", "running"]
