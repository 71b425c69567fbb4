"""The OpenAPI document kept in the package (``qwallet/api/openapi.json``) and its docs page.

The document is the published form of the contract (spec §1.5): it must be a valid OpenAPI 3.1
document, describe exactly the service's operations, agree with the domain's error codes, and its
examples — the partner documentation's verbatim withdraw example first — must validate against
the schemas they illustrate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib.metadata import version
from importlib.resources import files
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from qwallet.domain.errors import ErrorCode

DOCUMENT_TEXT = files("qwallet").joinpath("api/openapi.json").read_text(encoding="utf-8")
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_TEXT)
DOCS_PAGE = files("qwallet").joinpath("web/static/api-docs.html").read_text(encoding="utf-8")

DOCUMENT_URI = "urn:qwallet:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    DOCUMENT_URI, DRAFT202012.create_resource(DOCUMENT)
)

WALLET_ENDPOINTS = [
    "verifySession",
    "getBalance",
    "withdraw",
    "confirmWithdrawal",
    "rollbackWithdrawal",
    "deposit",
    "confirmDeposit",
    "rollbackDeposit",
]
EXPECTED_OPERATIONS = {("post", f"/wallet/{name}") for name in WALLET_ENDPOINTS} | {
    ("post", "/api/sessions"),
    ("get", "/api/partners/{name}/faults"),
    ("post", "/api/partners/{name}/faults"),
    ("delete", "/api/partners/{name}/faults/{ruleId}"),
    ("get", "/api/partners/{name}/report"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs/api"),
    ("get", "/partner/transactions"),
    ("get", "/partner/settlement"),
    ("get", "/partner/settlement.csv"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# The withdraw example of the partner documentation (seed page), verbatim.
DOCUMENTED_WITHDRAW_REQUEST_TEXT = """{
    "token": "0fabcdc4-fe07-44f2-b968-93da3b324898",
    "mmTransactionId": "1234abcd",
    "amount": {
        "amount": 230.00,
        "currencyCode": "XAG"
    },
    "txDescription": "Test Shopping."
}"""
DOCUMENTED_WITHDRAW_RESPONSE_TEXT = """{
    "mmTransactionId": "1234abcd",
    "qwTransactionId": "ef05411d-6c78-484c-910f-79d2aab8ccab",
    "balance": {
        "amount": 51800,
        "currencyCode": "XAG"
    }
}"""

# The error code every non-200 error answer carries (spec §1.2 and our 103/413 extensions).
ERROR_CODE_BY_STATUS = {"400": 101, "401": 103, "403": 103, "413": 101, "429": 104, "500": 100}


# --------------------------------------------------------------------------- helpers


def pointer(*segments: str) -> str:
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def validator(json_pointer: str) -> Draft202012Validator:
    """A Draft 2020-12 validator for the schema at ``json_pointer`` inside the document."""
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#{json_pointer}"},
        registry=REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/components/...``) to its target."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for segment in node["$ref"].removeprefix("#/").split("/"):
            target = target[segment.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def wallet_operation(name: str) -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"][f"/wallet/{name}"]["post"]
    return operation


def request_schema_pointer(path: str, method: str = "post") -> str:
    return pointer("paths", path, method, "requestBody", "content", "application/json", "schema")


def all_examples() -> Iterator[tuple[str, str, Any]]:
    """(id, JSON pointer of the schema, example value) for every JSON example in the document."""
    for method, path, operation in operations():
        if "requestBody" in operation:
            media = operation["requestBody"]["content"]["application/json"]
            for key, example in media.get("examples", {}).items():
                yield (
                    f"{path} request {key}",
                    request_schema_pointer(path, method),
                    example["value"],
                )
        for status, response in operation["responses"].items():
            ref = response.get("$ref")
            base = (
                ref.removeprefix("#")
                if ref
                else pointer("paths", path, method, "responses", status)
            )
            media = resolve(response).get("content", {}).get("application/json")
            if media is None:
                continue
            schema_pointer = base + pointer("content", "application/json", "schema")
            if "example" in media:
                yield f"{path} {status}", schema_pointer, media["example"]
            for key, example in media.get("examples", {}).items():
                yield f"{path} {status} {key}", schema_pointer, example["value"]


EXAMPLES = list(all_examples())


# --------------------------------------------------------------------------- the document


def test_document_is_a_valid_openapi_3_1_document() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_document_version_is_the_package_version() -> None:
    assert DOCUMENT["info"]["version"] == version("qwallet")


def test_document_is_pretty_printed_with_two_spaces() -> None:
    assert DOCUMENT_TEXT.startswith('{\n  "openapi": "3.1.0",\n')
    assert DOCUMENT_TEXT.endswith("}\n")
    for number, line in enumerate(DOCUMENT_TEXT.splitlines(), start=1):
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"line {number} is indented by {indent} spaces"


def test_document_describes_exactly_the_service_operations() -> None:
    assert {(method, path) for method, path, _ in operations()} == EXPECTED_OPERATIONS
    operation_ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(operation_ids) == len(set(operation_ids))


def test_security_schemes() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["walletBasic"] == schemes["walletBasic"] | {"type": "http", "scheme": "basic"}
    assert schemes["operatorBearer"] == schemes["operatorBearer"] | {
        "type": "http",
        "scheme": "bearer",
    }
    assert DOCUMENT["paths"]["/api/sessions"]["post"]["security"] == [{"operatorBearer": []}]


@pytest.mark.parametrize("name", WALLET_ENDPOINTS)
def test_wallet_operation(name: str) -> None:
    operation = wallet_operation(name)
    assert operation["operationId"] == name
    assert operation["security"] == [{"walletBasic": []}]
    body = operation["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]
    request_schema = resolve(body["content"]["application/json"]["schema"])
    assert request_schema["additionalProperties"] is False
    assert set(operation["responses"]) == {"200", "400", "401", "403", "413", "429", "500"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/ErrorResponse"} in ok["oneOf"]
    assert len(ok["oneOf"]) == 2


@pytest.mark.parametrize(
    ("names", "fields", "required"),
    [
        (["verifySession", "getBalance"], {"token"}, {"token"}),
        (
            ["withdraw", "deposit"],
            {"token", "mmTransactionId", "amount", "txDescription"},
            {"token", "mmTransactionId", "amount"},
        ),
        (
            ["confirmWithdrawal", "confirmDeposit"],
            {"token", "mmTransactionId", "amount"},
            {"token", "mmTransactionId", "amount"},
        ),
        (
            ["rollbackWithdrawal", "rollbackDeposit"],
            {"token", "mmTransactionId", "rollbackReason"},
            {"token", "mmTransactionId"},
        ),
    ],
)
def test_wallet_request_fields_follow_the_spec(
    names: list[str], fields: set[str], required: set[str]
) -> None:
    for name in names:
        media = wallet_operation(name)["requestBody"]["content"]["application/json"]
        schema = resolve(media["schema"])
        assert set(schema["properties"]) == fields, name
        assert set(schema["required"]) == required, name


def test_authenticated_operations_declare_success_400_401_500() -> None:
    for method, path, operation in operations():
        if operation.get("security") == []:
            continue
        success = {
            ("post", "/api/sessions"): "201",
            ("post", "/api/partners/{name}/faults"): "201",
        }.get((method, path), "204" if method == "delete" else "200")
        assert {success, "400", "401", "500"} <= set(operation["responses"]), (method, path)


def test_every_response_carries_x_request_id() -> None:
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            headers = resolve(response).get("headers", {})
            assert "X-Request-Id" in headers, (method, path, status)
            assert resolve(headers["X-Request-Id"])["required"] is True


def test_error_codes_agree_with_the_domain() -> None:
    enum = DOCUMENT["components"]["schemas"]["ErrorCode"]["enum"]
    # 103 (authentication failed, HTTP 401/403) is answered by the HTTP layer.
    assert sorted(enum) == sorted({int(code) for code in ErrorCode} | {103})


def test_error_table_is_in_the_info_description() -> None:
    description = DOCUMENT["info"]["description"]
    assert "| code | meaning | HTTP | retry the same call? |" in description
    for code in DOCUMENT["components"]["schemas"]["ErrorCode"]["enum"]:
        assert re.search(rf"^\| {code} \|", description, re.MULTILINE), code
    for code in ErrorCode:
        row = re.search(rf"^\| {int(code)} \|.*$", description, re.MULTILINE)
        assert row is not None
        assert str(code.http_status) in row.group(0), code
        assert row.group(0).split("|")[-2].strip().startswith("yes") is code.retryable


# --------------------------------------------------------------------------- examples


def test_documented_withdraw_example_is_verbatim_and_valid() -> None:
    operation = wallet_operation("withdraw")
    request_example = operation["requestBody"]["content"]["application/json"]["examples"][
        "documented"
    ]["value"]
    assert request_example == json.loads(DOCUMENTED_WITHDRAW_REQUEST_TEXT)
    validator(request_schema_pointer("/wallet/withdraw")).validate(request_example)

    response_example = operation["responses"]["200"]["content"]["application/json"]["examples"][
        "documented"
    ]["value"]
    assert response_example == json.loads(DOCUMENTED_WITHDRAW_RESPONSE_TEXT)
    success = validator(pointer("components", "schemas", "TransactionResponse"))
    success.validate(response_example)

    # The amounts are written as in the documentation, not as re-serialized floats.
    raw = json.loads(DOCUMENT_TEXT, parse_float=str)
    raw_withdraw = raw["paths"]["/wallet/withdraw"]["post"]
    raw_request = raw_withdraw["requestBody"]["content"]["application/json"]["examples"]
    assert raw_request["documented"]["value"]["amount"]["amount"] == "230.00"


def test_documented_confirm_and_rollback_examples() -> None:
    withdraw = json.loads(DOCUMENTED_WITHDRAW_REQUEST_TEXT)
    examples = {
        name: wallet_operation(name)["requestBody"]["content"]["application/json"]["examples"]
        for name in ("confirmWithdrawal", "rollbackWithdrawal")
    }
    confirm = {key: value for key, value in withdraw.items() if key != "txDescription"}
    assert examples["confirmWithdrawal"]["documented"]["value"] == confirm
    assert examples["rollbackWithdrawal"]["documented"]["value"] == {
        "token": withdraw["token"],
        "mmTransactionId": withdraw["mmTransactionId"],
        "rollbackReason": "Withdraw request failed.",
    }


def test_every_wallet_operation_has_examples() -> None:
    for name in WALLET_ENDPOINTS:
        operation = wallet_operation(name)
        assert operation["requestBody"]["content"]["application/json"]["examples"], name
        ok = operation["responses"]["200"]["content"]["application/json"]["examples"]
        assert any("errorCode" not in example["value"] for example in ok.values()), name
        assert any("errorCode" in example["value"] for example in ok.values()), name


@pytest.mark.parametrize(
    ("schema_pointer", "value"),
    [pytest.param(p, v, id=i) for i, p, v in EXAMPLES],
)
def test_example_validates_against_its_schema(schema_pointer: str, value: Any) -> None:
    validator(schema_pointer).validate(value)


@pytest.mark.parametrize(
    ("schema_pointer", "value"),
    # Error bodies only: a fault rule has an ``errorCode`` too (the code it injects).
    [
        pytest.param(p, v, id=i)
        for i, p, v in EXAMPLES
        if "errorCode" in v and "errorDescription" in v
    ],
)
def test_error_example_code_matches_its_status(schema_pointer: str, value: Any) -> None:
    match = re.search(r"/responses/(?:[^/]+/)?(\d{3})|/responses/(\w+)/", schema_pointer)
    assert match is not None
    status = match.group(1)
    if status is None:  # a shared component response: find its status from its users
        name = match.group(2)
        statuses = {
            code
            for _, _, operation in operations()
            for code, response in operation["responses"].items()
            if response.get("$ref") == f"#/components/responses/{name}"
        }
        assert len(statuses) == 1, (name, statuses)
        status = statuses.pop()
    if status == "200":
        assert value["errorCode"] not in ERROR_CODE_BY_STATUS.values()
    else:
        assert value["errorCode"] == ERROR_CODE_BY_STATUS[status]


# --------------------------------------------------------------------------- request schemas


def withdraw_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(DOCUMENTED_WITHDRAW_REQUEST_TEXT)
    request.update(changes)
    return {key: value for key, value in request.items() if value is not None}


@pytest.mark.parametrize(
    "request_body",
    [
        withdraw_request(unexpected="field"),
        withdraw_request(token=None),
        withdraw_request(token="t" * 65),
        withdraw_request(mmTransactionId=""),
        withdraw_request(mmTransactionId="x" * 65),
        withdraw_request(mmTransactionId="caf\u00e9"),
        withdraw_request(mmTransactionId="tab\there"),
        withdraw_request(amount={"amount": "230.00", "currencyCode": "XAG"}),
        withdraw_request(amount={"amount": 0, "currencyCode": "XAG"}),
        withdraw_request(amount={"amount": 230, "currencyCode": "xag"}),
        withdraw_request(amount={"amount": 230, "currencyCode": "XAG", "extra": 1}),
        withdraw_request(txDescription="d" * 256),
    ],
)
def test_withdraw_request_schema_rejects(request_body: dict[str, Any]) -> None:
    assert not validator(request_schema_pointer("/wallet/withdraw")).is_valid(request_body)


def test_withdraw_request_schema_accepts_limits() -> None:
    request = withdraw_request(token="t" * 64, mmTransactionId=" ~" * 32, txDescription="d" * 255)
    validator(request_schema_pointer("/wallet/withdraw")).validate(request)


def test_success_and_error_answers_are_told_apart() -> None:
    ok = validator(
        pointer(
            "paths", "/wallet/withdraw", "post", "responses", "200", "content", "application/json"
        )
        + "/schema"
    )
    # An error body that also carries the success fields still matches only ErrorResponse.
    error = {
        "errorCode": 121,
        "errorDescription": "Insufficient funds.",
        "mmTransactionId": "1234abcd",
        "qwTransactionId": "ef05411d-6c78-484c-910f-79d2aab8ccab",
        "balance": {"amount": 0, "currencyCode": "XAG"},
    }
    ok.validate(error)
    ok.validate(json.loads(DOCUMENTED_WITHDRAW_RESPONSE_TEXT))


# --------------------------------------------------------------------------- the docs page


def test_docs_page_is_self_contained() -> None:
    assert "/openapi.json" in DOCS_PAGE
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", DOCS_PAGE, re.I)
    assert not re.search(r"""@import|url\(\s*["']?(?:https?:)?//""", DOCS_PAGE, re.I)
