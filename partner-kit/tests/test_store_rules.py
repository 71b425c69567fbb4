"""The store's rules live once, in ``_store_rules.py``, and the adapters only run SQL.

Three kinds of check: the pure rules themselves (no database), the error texts as every store
raises them (so a backend cannot word a refusal its own way), and the shape of the source: the
rules module does no I/O, and the SQL adapter and its two dialects decide nothing (no state
compared, no ``FlowError`` built, no ``KitStore`` method written a second time). The source is
read from the imported package, so the checks hold for an installed wheel as for the checkout.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest

import qwallet_partner
from kit_support import StoreFactory
from qwallet_partner import FlowError, KitStore, PaymentOrder
from qwallet_partner import _store_rules as rules
from qwallet_partner._store import ClaimResult, EntryState, TransactionState

PACKAGE = Path(qwallet_partner.__file__).parent
RULES = PACKAGE / "_store_rules.py"
ADAPTER = PACKAGE / "_sql_store.py"
DIALECTS = (PACKAGE / "_sqlite.py", PACKAGE / "_postgres.py")
T0 = 1_700_000_000.0


# -- the rules, without a database -------------------------------------------------------------


def test_a_decision_is_final() -> None:
    assert rules.decide("withdrawal", "w", "confirm", "started") == "record"
    assert rules.decide("deposit", "d", "rollback", "pending") == "record"
    assert rules.decide("withdrawal", "w", "confirm", "confirmed") == "replay"
    assert rules.decide("withdrawal", "w", "rollback", "rolled_back") == "replay"
    with pytest.raises(FlowError, match=r"^withdrawal 'w' is already confirmed; it cannot be "):
        rules.decide("withdrawal", "w", "rollback", "confirmed")
    with pytest.raises(FlowError, match=r"^no deposit 'd' to confirm$"):
        rules.decide("deposit", "d", "confirm", None)
    assert [rules.decided_state(op) for op in ("confirm", "rollback")] == [
        "confirmed",
        "rolled_back",
    ]


def test_due_and_lease_times() -> None:
    assert rules.due_at(T0, None) == T0
    assert rules.due_at(T0, T0 + 30) == T0 + 30
    assert rules.due_at(T0, T0 - 30) == T0  # never earlier than the decision
    assert rules.lease_until(T0, 120.0) == T0 + 120


def test_finishing_an_attempt() -> None:
    long = "x" * (rules.OUTCOME_MAX_CHARS + 50)
    retry = rules.finish_attempt(T0, long, "due", T0 + 5)
    assert len(retry.outcome) == rules.OUTCOME_MAX_CHARS and retry.last_error == retry.outcome
    assert (retry.next_attempt_at, retry.finished_at) == (T0 + 5, None)
    done = rules.finish_attempt(T0, "ok", "delivered", None)
    assert (done.last_error, done.finished_at, done.next_attempt_at) == (None, T0, None)
    failed = rules.finish_attempt(T0, "131", "failed", None)
    assert (failed.last_error, failed.finished_at) == ("131", T0)
    # Only an entry that stays due has a next attempt.
    with pytest.raises(AssertionError):
        rules.finish_attempt(T0, "ok", "delivered", T0 + 5)
    with pytest.raises(AssertionError):
        rules.finish_attempt(T0, "timeout", "due", None)


def test_payment_claims() -> None:
    order = PaymentOrder("o", "uid", "1", "gems", "4.99", "{}", 1)
    seen = rules.StoredPayment(order.fingerprint, "delivering", T0 + 10)
    assert rules.payment_claim(order, seen, T0) == "busy"
    assert rules.payment_claim(order, seen, T0 + 10) == "take_over"  # the lease ran out
    other = PaymentOrder("o", "uid", "1", "gems", "0.01", "{}", 1)
    assert rules.payment_claim(other, seen, T0) == "conflict"
    delivered = rules.StoredPayment(order.fingerprint, "delivered", T0 - 100)
    assert rules.payment_claim(order, delivered, T0) == "delivered"
    assert rules.payment_claim(order, None, T0) == "busy"  # released meanwhile


# -- the texts, as every store raises them ------------------------------------------------------


def test_every_store_words_its_refusals_the_same(new_store: StoreFactory) -> None:
    async def main() -> None:
        store: KitStore = new_store()
        await store.start_transaction("withdrawal", "w-1", "tok", Decimal("1"), "XAG", None, T0)
        with pytest.raises(FlowError) as duplicate:
            await store.start_transaction("withdrawal", "w-1", "tok", Decimal("2"), "XAG", None, T0)
        assert str(duplicate.value) == "withdrawal 'w-1' already exists"
        with pytest.raises(FlowError) as missing:
            await store.decide("deposit", "w-1", "confirm", None, T0)
        assert str(missing.value) == "no deposit 'w-1' to confirm"
        await store.decide("withdrawal", "w-1", "rollback", "x", T0)
        with pytest.raises(FlowError) as final:
            await store.decide("withdrawal", "w-1", "confirm", None, T0)
        assert str(final.value) == "withdrawal 'w-1' is already rolled_back; it cannot be confirmed"
        # A refused call changed nothing.
        record = await store.get_transaction("withdrawal", "w-1")
        assert record is not None and (record.state, record.amount) == ("rolled_back", 1)
        await store.close()

    asyncio.run(main())


def test_every_store_keeps_outcomes_to_the_same_length(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        await store.start_transaction("deposit", "d-1", "tok", Decimal("1"), "XAG", None, T0)
        entry = await store.decide("deposit", "d-1", "confirm", None, T0)
        (claimed,) = await store.claim_due(T0, 60.0, 10)
        assert claimed.id == entry.id
        await store.finish_attempt(entry.id, T0 + 1, "e" * 5000, "due", T0 + 5)
        (attempt,) = await store.attempts(entry.id)
        again = await store.get_entry("deposit", "d-1")
        assert again is not None and again.last_error == attempt.outcome
        assert len(attempt.outcome) == rules.OUTCOME_MAX_CHARS
        await store.close()

    asyncio.run(main())


# -- the shape of the source --------------------------------------------------------------------

# What a module may import and still do no I/O.
PURE_IMPORTS = {
    "__future__",
    "dataclasses",
    "typing",
    "qwallet_partner._exceptions",
    "qwallet_partner._store",
}
STATES = (
    set(get_args(TransactionState))
    | set(get_args(EntryState))
    | set(get_args(ClaimResult))
    | {"delivering"}
)
KIT_STORE_METHODS = {
    name for name, value in vars(KitStore).items() if callable(value) and not name.startswith("_")
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.module is not None and node.level == 0
            found.add(node.module)
    return found


def _names(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.alias):
            yield node.lineno, node.name.rpartition(".")[2]


def _code_strings(tree: ast.Module) -> Iterator[ast.Constant]:
    """String constants that are code (SQL, messages), not docstrings or comments in quotes."""
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            yield node


def _error_fragments() -> set[str]:
    """The distinctive literal parts of every ``FlowError`` text the rules build."""
    fragments: set[str] = set()
    for node in ast.walk(_tree(RULES)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FlowError":
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    fragments |= {part.value} if len(part.value.strip()) >= 8 else set()
    return fragments


def test_the_rules_do_no_io() -> None:
    tree = _tree(RULES)
    assert _imports(tree) <= PURE_IMPORTS, _imports(tree) - PURE_IMPORTS
    coroutines = [n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.Await)]
    assert coroutines == [], "the rules module waits on nothing"


@pytest.mark.parametrize("path", [ADAPTER, *DIALECTS], ids=lambda path: path.name)
def test_the_adapters_decide_nothing(path: Path) -> None:
    tree = _tree(path)
    problems = [
        f"line {line}: FlowError is the rules' to raise"
        for line, name in _names(tree)
        if name == "FlowError"
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant) and operand.value in STATES:
                    problems.append(f"line {node.lineno}: compares a state ({operand.value!r})")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("max", "min")
        ):
            problems.append(f"line {node.lineno}: computes a time with {node.func.id}()")
    assert problems == [], problems


def test_each_error_text_is_written_once() -> None:
    fragments = _error_fragments()
    assert {" already exists", "; it cannot be "} <= fragments, fragments
    for path in sorted(PACKAGE.glob("*.py")):
        if path == RULES:
            continue
        found = {
            c.value for c in _code_strings(_tree(path)) if any(f in c.value for f in fragments)
        }
        assert found == set(), (path.name, found)


def test_each_kit_store_method_is_written_once() -> None:
    """The dialects provide connection handling and words of SQL; the methods are the adapter's."""
    (adapter,) = [
        node
        for node in _tree(ADAPTER).body
        if isinstance(node, ast.ClassDef) and node.name == "SqlKitStore"
    ]
    methods = {node.name for node in adapter.body if isinstance(node, ast.AsyncFunctionDef)}
    assert methods >= KIT_STORE_METHODS, KIT_STORE_METHODS - methods
    for path in DIALECTS:
        written = {
            node.name for node in ast.walk(_tree(path)) if isinstance(node, ast.AsyncFunctionDef)
        }
        # ``close`` ends the dialect's own connections.
        assert written & KIT_STORE_METHODS <= {"close"}, (path.name, written & KIT_STORE_METHODS)


def test_every_statement_uses_numbered_placeholders() -> None:
    """Statements are written once, with ``$n``; a ``?`` placeholder would only work on SQLite."""
    statements = [c.value for c in _code_strings(_tree(ADAPTER)) if "kit_" in c.value]
    assert len(statements) > 20
    assert [sql for sql in statements if "?" in sql] == []
