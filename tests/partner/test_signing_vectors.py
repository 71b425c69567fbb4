"""``docs/partner-kit/signing-vectors.csv`` is what the kit computes (and what the platform sends),
and the verification examples in JavaScript and Java agree with every vector.

The CSV is written by ``partner-kit/scripts/write_signing_vectors.py`` from the kit's own
``payment_sign`` and ``signature_header``. Go and PHP have no toolchain on this machine, so they
have no example here (docs/partner-kit.md says so).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from qwallet.payments.callback import build_callback, md5_sign
from qwallet.payments.callback import signature_header as platform_signature_header
from qwallet_partner import payment_sign, signature_header

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "partner-kit" / "signing-vectors.csv"
EXAMPLES = ROOT / "docs" / "partner-kit" / "examples"
SCRIPT = ROOT / "partner-kit" / "scripts" / "write_signing_vectors.py"
SIGN_FIELDS = ("cpOrderId", "serverId", "uid", "productPrice", "productId", "ts")


def _vectors(path: Path = VECTORS) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("write_signing_vectors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_file_is_what_the_script_writes() -> None:
    assert VECTORS.read_text(encoding="utf-8") == _script().render(), (
        "docs/partner-kit/signing-vectors.csv is out of date: "
        "python partner-kit/scripts/write_signing_vectors.py"
    )


def test_every_vector_is_what_the_kit_and_the_platform_compute() -> None:
    vectors = _vectors()
    kinds = {v["kind"] for v in vectors}
    assert kinds == {"sign", "x-qw-signature"}
    for v in vectors:
        if v["kind"] == "sign":
            args = [v[name] for name in SIGN_FIELDS]
            assert v["signed_text"] == "".join(args) + v["secret"], v["case"]
            assert payment_sign(*args, v["secret"]) == v["expected"], v["case"]
            assert md5_sign(*args, v["secret"]) == v["expected"], v["case"]
        else:
            body, t = v["body"].encode(), int(v["t"])
            assert v["signed_text"] == f"{t}.{v['body']}", v["case"]
            assert signature_header(body, v["secret"], t) == v["expected"], v["case"]
            assert platform_signature_header(body, v["secret"], t) == v["expected"], v["case"]


def test_the_documented_cases_are_there() -> None:
    by_case = {v["case"]: v for v in _vectors()}
    # The contract's worked example (spec 2.3), value for value.
    example = by_case["doc-worked-example"]
    assert [example[name] for name in SIGN_FIELDS] == [
        "c9c35cf409344312146fa7546a94d1a6",
        "10001",
        "test",
        "4.99",
        "wm.spin.1",
        "1682319749000",
    ]
    assert example["secret"] == "MKiLHWZvGPTq2258"
    assert example["expected"] == "39E27178DE3254875D8470AB7A13D912"
    # The field-boundary shift: other fields, the same sign; their callbacks' headers differ.
    a, b = by_case["field-shift-a"], by_case["field-shift-b"]
    assert (a["cpOrderId"], a["serverId"]) != (b["cpOrderId"], b["serverId"])
    assert a["expected"] == b["expected"]
    headers = {by_case[f"callback-form-field-shift-{x}"]["expected"] for x in "ab"}
    assert len(headers) == 2
    # Non-ASCII (a 4-byte character included), an empty optional field, an empty body.
    assert any(ord(c) > 0xFFFF for c in by_case["non-ascii"]["productId"])
    assert by_case["doc-worked-example"]["extParams"] == ""
    assert by_case["ext-params-not-signed"]["expected"] == example["expected"]
    assert by_case["empty-body"]["body"] == ""
    assert not by_case["raw-utf8-body"]["body"].isascii()


def test_callback_bodies_are_what_the_platform_sends() -> None:
    """Each ``callback-*`` body and header is the platform's own callback for those fields."""
    callbacks = [v for v in _vectors() if v["case"].startswith("callback-")]
    assert len(callbacks) >= 5
    for v in callbacks:
        if v["body"].startswith("{"):
            body_format = "json"
            fields = json.loads(v["body"], parse_float=str, parse_int=str)
        else:
            body_format = "form"
            fields = dict(parse_qsl(v["body"], keep_blank_values=True, strict_parsing=True))
        callback = build_callback(
            uid=fields["uid"],
            server_id=fields["serverId"],
            cp_order_id=fields["cpOrderId"],
            product_id=fields["productId"],
            product_price=fields["productPrice"],
            ext_params=fields["extParams"],
            amount=fields["amount"],
            currency_code=fields["currencyCode"],
            provider=fields["provider"],
            ts_ms=int(v["t"]),
            secret=v["secret"],
            body_format=body_format,
        )
        assert callback.body == v["body"].encode(), v["case"]
        assert callback.headers["X-QW-Signature"] == v["expected"], v["case"]


def _tampered(tmp_path: Path) -> Path:
    """The vectors with one expected sign wrong: an example must then fail."""
    text = VECTORS.read_text(encoding="utf-8")
    wrong = text.replace("39E27178DE3254875D8470AB7A13D912", "39E27178DE3254875D8470AB7A13D913", 1)
    assert wrong != text
    path = tmp_path / "tampered.csv"
    path.write_text(wrong, encoding="utf-8")
    return path


def _tool(name: str) -> str:
    """The toolchain's command; missing, the test is skipped, except in CI (``CI`` set), where
    the examples are part of what CI proves."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (CI must run this example)")
        pytest.skip(f"{name} is not installed")
    return path


def test_the_javascript_example_agrees_with_every_vector(tmp_path: Path) -> None:
    node = _tool("node")
    script = EXAMPLES / "verify-signatures.js"
    count = len(_vectors())
    result = subprocess.run(
        [node, script, VECTORS], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"javascript: {count} vectors, 0 failures"
    bad = subprocess.run(
        [node, script, _tampered(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1
    assert "FAIL doc-worked-example: sign 39E27178DE3254875D8470AB7A13D912" in bad.stdout


def test_the_java_example_agrees_with_every_vector(tmp_path: Path) -> None:
    javac, java = _tool("javac"), _tool("java")
    classes = tmp_path / "classes"
    subprocess.run(
        [javac, "-Xlint:all", "-Werror", "-d", classes, EXAMPLES / "VerifySignatures.java"],
        check=True,
        timeout=120,
    )
    count = len(_vectors())
    run = [java, "-cp", classes, "VerifySignatures"]
    result = subprocess.run(
        [*run, VECTORS], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"java: {count} vectors, 0 failures"
    bad = subprocess.run([*run, _tampered(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "FAIL doc-worked-example: sign 39E27178DE3254875D8470AB7A13D912" in bad.stdout
