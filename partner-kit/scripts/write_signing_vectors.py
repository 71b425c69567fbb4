"""Write ``docs/partner-kit/signing-vectors.csv``: the payment callback's two signatures, with
inputs and outputs, computed by the kit's own functions (``payment_sign``, ``signature_header``).

    python partner-kit/scripts/write_signing_vectors.py          # rewrite the file
    python partner-kit/scripts/write_signing_vectors.py --check  # exit 1 if it is out of date

Columns (UTF-8, RFC 4180: fields with a comma or a quote are quoted, quotes doubled; no field
holds a line break):

- ``case``: the vector's name; ``kind``: ``sign`` (the documented MD5) or ``x-qw-signature``
  (the header's HMAC-SHA256);
- ``secret``: the shared secret;
- for ``sign``: ``cpOrderId``, ``serverId``, ``uid``, ``productPrice``, ``productId``, ``ts``
  (signed in that order, then the secret) and ``extParams`` (sent, never signed);
- for ``x-qw-signature``: ``t`` (milliseconds) and ``body``, the exact request body as UTF-8
  text (a ``callback-*`` body is what the platform sends for those fields);
- ``signed_text``: exactly what is hashed (``sign``: the concatenation; the header:
  ``"<t>." + body``), as UTF-8;
- ``expected``: the ``sign`` (uppercase hex) or the whole header value ``t=<t>,v1=<hex>``;
- ``note``: what the vector shows.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from qwallet_partner import payment_sign, signature_header

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "partner-kit" / "signing-vectors.csv"
COLUMNS = [
    "case",
    "kind",
    "secret",
    "cpOrderId",
    "serverId",
    "uid",
    "productPrice",
    "productId",
    "ts",
    "extParams",
    "t",
    "body",
    "signed_text",
    "expected",
    "note",
]
SECRET = "MKiLHWZvGPTq2258"  # noqa: S105 - the contract's published example secret
EXAMPLE = {
    "cpOrderId": "c9c35cf409344312146fa7546a94d1a6",
    "serverId": "10001",
    "uid": "test",
    "productPrice": "4.99",
    "productId": "wm.spin.1",
    "ts": "1682319749000",
    "extParams": "",
}
# The tail of cpOrderId moved into serverId: another order, the same MD5.
SHIFTED = {**EXAMPLE, "cpOrderId": EXAMPLE["cpOrderId"][:-1], "serverId": "610001"}
UNICODE = {
    **EXAMPLE,
    "cpOrderId": "order-ü-7",
    "uid": "игрок-é",
    "productId": "宝石.💎.100",
    "extParams": "café=1&x=☃",
}


@dataclass(frozen=True)
class SignCase:
    case: str
    fields: dict[str, str]
    note: str
    secret: str = SECRET


@dataclass(frozen=True)
class HeaderCase:
    case: str
    body: str
    t: int
    note: str
    secret: str = SECRET


def callback_body(fields: dict[str, str], body_format: str) -> str:
    """The platform's callback body for ``fields`` (form by default, or JSON).

    The same order and encoding as the platform's sender: ``amount``, ``currencyCode`` and
    ``provider`` after ``extParams``; in JSON, serverId, productPrice, amount and ts are numbers
    written with the text that was signed (``4.90`` stays ``4.90``) and strings are escaped to
    ASCII.
    """
    sign = _sign(fields, SECRET)
    ordered = {
        "uid": fields["uid"],
        "serverId": fields["serverId"],
        "cpOrderId": fields["cpOrderId"],
        "productId": fields["productId"],
        "productPrice": fields["productPrice"],
        "extParams": fields["extParams"],
        "amount": fields["productPrice"],
        "currencyCode": "EUR",
        "provider": "wallet",
        "ts": fields["ts"],
        "sign": sign,
    }
    if body_format == "form":
        return urlencode(ordered)
    numbers = ("serverId", "productPrice", "amount", "ts")
    items = [
        f"{json.dumps(name)}: {value if name in numbers else json.dumps(value)}"
        for name, value in ordered.items()
    ]
    return "{" + ", ".join(items) + "}"


def _sign(fields: dict[str, str], secret: str) -> str:
    return payment_sign(
        fields["cpOrderId"],
        fields["serverId"],
        fields["uid"],
        fields["productPrice"],
        fields["productId"],
        fields["ts"],
        secret,
    )


SIGN_CASES = [
    SignCase("doc-worked-example", EXAMPLE, "the contract's worked example (spec 2.3)"),
    SignCase(
        "ext-params-not-signed",
        {**EXAMPLE, "extParams": "level=7&skin=gold"},
        "extParams differs from doc-worked-example, the sign does not: it is never signed",
    ),
    SignCase(
        "field-shift-a", EXAMPLE, "with field-shift-b: characters moved across a field boundary"
    ),
    SignCase(
        "field-shift-b",
        SHIFTED,
        "the last character of cpOrderId moved into serverId: another order, the same sign as "
        "field-shift-a (only X-QW-Signature tells them apart)",
    ),
    SignCase(
        "price-text-as-sent",
        {**EXAMPLE, "productPrice": "4.90"},
        "the price is signed as the text sent: 4.90 and 4.9 sign differently",
    ),
    SignCase("price-text-short", {**EXAMPLE, "productPrice": "4.9"}, "see price-text-as-sent"),
    SignCase(
        "non-ascii",
        UNICODE,
        "non-ASCII values are hashed as UTF-8 bytes (a 4-byte character included)",
    ),
    SignCase(
        "server-id-zero",
        {**EXAMPLE, "serverId": "0", "productPrice": "0.01"},
        "the smallest values the receiver accepts",
    ),
    SignCase(
        "empty-secret",
        EXAMPLE,
        "an empty secret (never configure one) still gives a sign: do not rely on it",
        secret="",
    ),
]

HEADER_CASES = [
    HeaderCase(
        "callback-form-doc-example",
        callback_body(EXAMPLE, "form"),
        1682319749000,
        "the worked example as the platform sends it (form); the docs' callback example",
    ),
    HeaderCase(
        "callback-json-doc-example",
        callback_body(EXAMPLE, "json"),
        1682319749000,
        "the same callback in JSON (partners configured for JSON)",
    ),
    HeaderCase(
        "callback-form-field-shift-a",
        callback_body(EXAMPLE, "form"),
        1682319749000,
        "field-shift-a's callback: its header",
    ),
    HeaderCase(
        "callback-form-field-shift-b",
        callback_body(SHIFTED, "form"),
        1682319749000,
        "field-shift-b's callback: same sign as field-shift-a, different header",
    ),
    HeaderCase(
        "callback-form-non-ascii",
        callback_body(UNICODE, "form"),
        1682319749000,
        "non-ASCII fields, percent-encoded as UTF-8 in the form",
    ),
    HeaderCase(
        "callback-json-non-ascii",
        callback_body(UNICODE, "json"),
        1682319749000,
        "non-ASCII fields as JSON \\u escapes (what the platform writes)",
    ),
    HeaderCase(
        "callback-json-price-text",
        callback_body({**EXAMPLE, "productPrice": "4.90"}, "json"),
        1682319749000,
        "a JSON number keeps its text: 4.90 in the body",
    ),
    HeaderCase(
        "raw-utf8-body",
        '{"note": "café ☃ 💎"}',
        1682319753000,
        "the HMAC is over the body's bytes: raw UTF-8 here, not escapes",
    ),
    HeaderCase("empty-body", "", 1682319754000, 'an empty body: the message is "<t>." alone'),
    HeaderCase(
        "rotation-new-secret",
        callback_body(EXAMPLE, "form"),
        1682319749000,
        "callback-form-doc-example under another secret: during a rotation the platform sends "
        "one v1= per secret",
        secret="n3w-s3cret-2026",  # noqa: S106 - a test vector, not a credential
    ),
]


def rows() -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for sign_case in SIGN_CASES:
        f = sign_case.fields
        signed = (
            f["cpOrderId"]
            + f["serverId"]
            + f["uid"]
            + f["productPrice"]
            + f["productId"]
            + f["ts"]
            + sign_case.secret
        )
        out.append(
            {
                "case": sign_case.case,
                "kind": "sign",
                "secret": sign_case.secret,
                **{name: f[name] for name in COLUMNS[3:10]},
                "t": "",
                "body": "",
                "signed_text": signed,
                "expected": _sign(f, sign_case.secret),
                "note": sign_case.note,
            }
        )
    for header_case in HEADER_CASES:
        out.append(
            {
                "case": header_case.case,
                "kind": "x-qw-signature",
                "secret": header_case.secret,
                **{name: "" for name in COLUMNS[3:10]},
                "t": str(header_case.t),
                "body": header_case.body,
                "signed_text": f"{header_case.t}.{header_case.body}",
                "expected": signature_header(
                    header_case.body.encode(), header_case.secret, header_case.t
                ),
                "note": header_case.note,
            }
        )
    return out


def render() -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows())
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows())} vectors to {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
