"""The kit keeps its own copy of the contract's error codes (it must import without the
platform); this proves the copy is the platform's, member by member."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from qwallet.domain.errors import ErrorCode as DomainErrorCode
from qwallet.partner import ErrorCode as KitErrorCode
from qwallet.partner import WalletAPIError
from qwallet.partner._exceptions import error_for_code


def test_kit_error_code_equals_the_domains_member_by_member() -> None:
    kit = [(member.name, member.value) for member in KitErrorCode]
    domain = [(member.name, member.value) for member in DomainErrorCode]
    assert kit == domain
    # The kit's earlier name of 103 stays usable, as an alias of the same member.
    assert KitErrorCode.NOT_ALLOWED is KitErrorCode.NOT_AUTHORIZED
    aliases = set(KitErrorCode.__members__) - {member.name for member in KitErrorCode}
    assert aliases == {"NOT_ALLOWED"}


def test_every_code_has_its_own_exception_class() -> None:
    for code in KitErrorCode:
        error = error_for_code(int(code), "text", http_status=code_status(code))
        assert type(error) is not WalletAPIError, code
        assert error.code == code
        assert error.retryable == DomainErrorCode(int(code)).retryable, code


def code_status(code: KitErrorCode) -> int:
    return DomainErrorCode(int(code)).http_status


def test_the_kit_imports_without_the_platform() -> None:
    """``qwallet_partner`` loads no module of the platform, nor Starlette or asyncpg (its two
    optional extras) until they are used. ``tests/partner_dist`` proves it in a venv without them."""
    program = (
        "import sys, qwallet_partner\n"
        "loaded = sorted(m for m in sys.modules if m.partition('.')[0]"
        " in ('qwallet', 'starlette', 'asyncpg'))\n"
        "print(loaded)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_the_platform_name_is_the_kit() -> None:
    """``qwallet.partner`` re-exports the kit: exactly the kit's names, the same objects, and
    every private module of the kit under the platform's name too."""
    import qwallet.partner
    import qwallet.partner._http
    import qwallet_partner
    import qwallet_partner._http

    assert qwallet.partner.__all__ == qwallet_partner.__all__
    # Nothing of the shim's own: its public names are the kit's list, no more and no fewer.
    public = {name for name in vars(qwallet.partner) if not name.startswith("_")}
    assert public == {name for name in qwallet_partner.__all__ if not name.startswith("_")}
    for name in qwallet.partner.__all__:
        assert getattr(qwallet.partner, name) is getattr(qwallet_partner, name), name
    assert qwallet.partner._http is qwallet_partner._http
    kit_modules = [p.stem for p in Path(qwallet_partner.__file__).parent.glob("_*.py")]
    assert "_store_rules" in kit_modules
    for module in kit_modules:
        if module == "__init__":
            continue
        alias = importlib.import_module(f"qwallet.partner.{module}")
        assert alias is importlib.import_module(f"qwallet_partner.{module}"), module
        assert getattr(qwallet.partner, module) is alias, module
