"""``qwallet.partner``: the partner kit under the platform's name (a re-export, nothing more).

The kit is its own distribution, ``qwallet-partner``, whose package is ``qwallet_partner``
(source in ``partner-kit/`` of this repository; the platform's wheel carries the same package).
This module keeps ``from qwallet.partner import ...`` working for the platform's own code and
for studios that wrote their integration against the platform's package: its names are the
kit's ``__all__``, each the very object of ``qwallet_partner`` (same classes, so ``except`` and
``isinstance`` agree), and the kit's private modules are aliased too (``qwallet.partner._http``
is ``qwallet_partner._http``). A studio that installs the kit alone imports ``qwallet_partner``.
See ``docs/partner-kit.md``.
"""

import importlib as _importlib
import pkgutil as _pkgutil
import sys as _sys

import qwallet_partner as _kit
from qwallet_partner import *  # noqa: F403 - the kit's own list, so it is not kept twice

__all__ = list(_kit.__all__)

# Every module of the kit, found on its path (so a new one needs no line here): in sys.modules
# for ``import qwallet.partner._x``, as an attribute for ``qwallet.partner._x``. The platform's
# tests reach some of them (``_http``, ``_exceptions``, ``_outbox``). The platform always has
# Starlette, so the two endpoint modules load up front like the rest.
for _found in _pkgutil.iter_modules(_kit.__path__):
    _module = _importlib.import_module(f"{_kit.__name__}.{_found.name}")
    _sys.modules[f"{__name__}.{_found.name}"] = globals()[_found.name] = _module
del _found, _module
