"""qwallet — the Quantum Web integration service.

The platform's Wallet API (``qwallet.api``), its storage (``qwallet.store``), the pure rules
underneath (``qwallet.domain``), and the kit a partner studio runs on its own side
(``qwallet.partner``).
"""

__version__ = "0.1.0"
