"""The partner kit installs and works without the platform (``partner-kit/``, ``qwallet-partner``).

One test, in stages, in one fresh venv that never sees the platform:

1. the kit's wheel is built from a copy of ``partner-kit/`` (the build leaves nothing in the
   checkout) with the suite's own setuptools;
2. the venv gets the kit's runtime lock only (``partner-kit/requirements.txt``: httpx, msgspec
   and what they need, pinned with hashes) and the wheel without dependencies: ``import qwallet``
   fails, the kit works against its in-memory platform, and the two endpoints say which extra
   they need;
3. the extras and the kit's test tools are added (``partner-kit/requirements-test.txt``, with
   hashes), ``pip check`` agrees, nothing outside the kit's locks is installed, and the kit's own
   tests (``partner-kit/tests``, PostgreSQL half included) and the guide's examples
   (``docs/partner-kit.md``) run there, importing the installed wheel.

pip installs from its cache when it has the pinned files (the suite's own install put them there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "partner-kit"

# Run inside the venv with only the runtime lock: no Starlette, no asyncpg, no platform.
CORE_CHECK = r"""
import asyncio, importlib.util, sys
from decimal import Decimal
import qwallet_partner
from qwallet_partner import InMemoryWallet, Money, PartnerKit, SQLiteStore, WalletClient
from qwallet_partner import payment_sign, signature_header

assert qwallet_partner.__file__.startswith(sys.prefix), qwallet_partner.__file__
for name in ("qwallet", "starlette", "asyncpg", "uvicorn"):
    assert importlib.util.find_spec(name) is None, name + " is installed"


async def main(path):
    platform = InMemoryWallet(username="studio", password="pw")
    token = platform.add_player("10.00", player_id="p-1")
    client = WalletClient("https://platform.example", "studio", "pw",
                          transport=platform.transport)
    async with PartnerKit(client, SQLiteStore(path)) as kit:
        async with kit.withdrawal(token, Money(Decimal("4.99"), "XAG"), "Sword") as w:
            pass
    assert w.outcome == "confirmed" and w.acknowledged
    assert platform.available("p-1") == Decimal("5.01")


asyncio.run(main(sys.argv[1]))
assert payment_sign("c9c35cf409344312146fa7546a94d1a6", "10001", "test", "4.99", "wm.spin.1",
                    "1682319749000", "MKiLHWZvGPTq2258") == "39E27178DE3254875D8470AB7A13D912"
assert signature_header(b"", "k", 1).startswith("t=1,v1=")
for name in ("PaymentCallbackApp", "QueryWithdrawalApp"):
    try:
        getattr(qwallet_partner, name)
    except ModuleNotFoundError as exc:
        assert "qwallet-partner[server]" in str(exc), exc
    else:
        raise AssertionError(name + " imported without Starlette")
print("core ok", qwallet_partner.__version__)
"""


BUILD_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
# The kit's own configuration (partner-kit/pyproject.toml), not the platform's.
KIT_TESTS = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(KIT)]
KIT_TESTS += ["-c", str(KIT / "pyproject.toml"), str(KIT / "tests")]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# The guide's examples (docs/partner-kit.md), run as tests/partner/test_docs.py runs them.
DOC_EXAMPLES = r"""
import re, sys
from pathlib import Path
doc = Path(sys.argv[1])
blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(), flags=re.S | re.M)
assert len(blocks) >= 5
namespace = {"__name__": "partner_kit_doc"}
for number, block in enumerate(blocks, 1):
    exec(compile(block, f"{doc.name}:block{number}", "exec"), namespace)
print(f"{len(blocks)} examples ran")
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(str(a) for a in args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result


def _pinned_names(lock: Path) -> set[str]:
    names = set()
    for line in lock.read_text().splitlines():
        if line and line[0].isalnum() and "==" in line:
            names.add(_canonical(line.split("==", 1)[0]))
    return names


@pytest.mark.postgres
def test_the_kit_installs_and_passes_its_tests_without_the_platform(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(KIT, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    wheels = tmp_path / "wheels"
    _run(
        [*BUILD_WHEEL, "-w", wheels, source],
        tmp_path,
        120,
    )
    (wheel,) = wheels.glob("qwallet_partner-*.whl")
    # The kit's own version, from its own module (not the platform's).
    dynamic = tomllib.loads((KIT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "qwallet_partner._version.__version__"}
    version_file = (KIT / "src" / "qwallet_partner" / "_version.py").read_text()
    version = re.search(r'^__version__ = "([^"]+)"$', version_file, re.M)[1]  # type: ignore[index]
    assert wheel.name.startswith(f"qwallet_partner-{version}-py3-none-any")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, 60)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--require-hashes", "--only-binary", ":all:"]

    # Stage 2: the runtime lock and the kit, nothing else.
    _run([*pip, "-r", KIT / "requirements.txt"], tmp_path, 180)
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], tmp_path, 60)
    missing = subprocess.run(
        [python, "-c", "import qwallet"], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert missing.returncode != 0
    assert "No module named 'qwallet'" in missing.stderr
    core = _run([python, "-c", CORE_CHECK, tmp_path / "core.db"], tmp_path, 60)
    assert core.stdout.strip() == f"core ok {version}"

    # Stage 3: the extras and the test tools, then the kit's own tests.
    _run([*pip, "-r", KIT / "requirements-test.txt"], tmp_path, 180)
    _run([python, "-m", "pip", "check"], tmp_path, 60)
    frozen = _run([python, "-m", "pip", "freeze", "--all"], tmp_path, 60).stdout
    installed = {_canonical(re.split(r"==| @ ", line)[0]) for line in frozen.splitlines() if line}
    allowed = _pinned_names(KIT / "requirements-test.txt") | {
        "qwallet-partner",
        "pip",
        "setuptools",
    }
    assert installed <= allowed, f"not from the kit's locks: {sorted(installed - allowed)}"
    assert "qwallet" not in installed and "qwallet-partner" in installed
    tests = _run(
        [python, *KIT_TESTS],
        tmp_path,
        300,
    )
    summary = tests.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    docs = _run([python, "-c", DOC_EXAMPLES, ROOT / "docs" / "partner-kit.md"], tmp_path, 120)
    assert docs.stdout.strip().endswith("examples ran")
    print(f"kit alone: {summary}; {docs.stdout.strip()}")
