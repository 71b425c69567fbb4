"""The layering of ``docs/architecture.md`` is a contract: this test reads its table and holds
every import of ``src/qwallet`` to it.

Each row names one or more packages or top-level modules of ``qwallet`` and, in its last column,
what they may import ("—" for nothing). An import of anything else from ``qwallet`` fails, wherever
it stands: at the top of a module, inside a function (a lazy import is still a dependency) or under
``TYPE_CHECKING``. Every package and top-level module must have a row, so a new one cannot slip
in unlayered. A row may also name a subpackage (``qwallet.demo.game``): its modules are then held
to that row, not to their package's, and importing it needs its own name in the importer's row.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "qwallet"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
NOTHING = "—"


def layer_table() -> dict[str, frozenset[str]]:
    """``{unit: units it may import}`` from the table under "## Layers"."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `qwallet.")]
    assert rows, "docs/architecture.md has no layer table under '## Layers'"
    table: dict[str, frozenset[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        units = re.findall(r"`qwallet\.([a-z_.]+)`", cells[0])
        allowed = cells[-1]
        names = (
            frozenset()
            if allowed == NOTHING
            else frozenset(name.strip() for name in allowed.split(","))
        )
        for unit in units:
            assert unit not in table, f"qwallet.{unit} has two rows in the layer table"
            table[unit] = names
    return table


def source_units() -> set[str]:
    """The packages and top-level modules of ``src/qwallet``."""
    units = {path.name for path in SOURCE.iterdir() if (path / "__init__.py").exists()}
    units |= {path.stem for path in SOURCE.glob("*.py") if path.name != "__init__.py"}
    return units


def unit_exists(unit: str) -> bool:
    path = SOURCE.joinpath(*unit.split("."))
    return (path / "__init__.py").exists() or path.with_suffix(".py").exists()


def layered_units() -> set[str]:
    """The units imports are resolved to: every package and top-level module, and the
    subpackages that have their own row."""
    return source_units() | {unit for unit in layer_table() if unit_exists(unit)}


def unit_for(dotted: str, units: set[str]) -> str | None:
    """The unit of ``qwallet.<dotted>``: the longest unit its name starts with."""
    parts = dotted.split(".")
    for length in range(len(parts), 0, -1):
        if ".".join(parts[:length]) in units:
            return ".".join(parts[:length])
    return None


@dataclass(frozen=True, slots=True)
class Import:
    path: Path
    line: int
    target: str  # the unit of qwallet it reaches

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports qwallet.{self.target}"


def module_name(path: Path) -> list[str]:
    parts = ["qwallet", *path.relative_to(SOURCE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: Path, units: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module_name(path)
                if path.name != "__init__.py":
                    package = package[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from qwallet import logs`` reaches qwallet.logs, not qwallet itself, and
            # ``from qwallet.demo import game`` reaches qwallet.demo.game.
            modules = [f"{module}.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "qwallet" and len(parts) > 1:
                target = unit_for(".".join(parts[1:]), units)
                if target is not None:
                    found.append(Import(path, node.lineno, target))
    return found


def unit_of(path: Path, units: set[str] | None = None) -> str:
    relative = path.relative_to(SOURCE)
    top = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    if units is None:
        return top
    return unit_for(".".join(module_name(path)[1:]), units) or top


def test_every_package_is_in_the_table() -> None:
    table = layer_table()
    units = layered_units()
    assert sorted(source_units() - table.keys()) == [], (
        "packages without a row in docs/architecture.md"
    )
    assert sorted(table.keys() - units) == [], "rows in docs/architecture.md for no package"
    for unit, allowed in table.items():
        assert allowed <= units, f"qwallet.{unit} may import unknown {sorted(allowed - units)}"


def test_imports_follow_the_table() -> None:
    table = layer_table()
    units = layered_units()
    violations = [
        str(found)
        for path in sorted(SOURCE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent != SOURCE
        for found in imports_of(path, units)
        if found.target != unit_of(path, units) and found.target not in table[unit_of(path, units)]
    ]
    assert violations == []


def test_the_table_has_no_cycles() -> None:
    table = layer_table()
    done: set[str] = set()

    def visit(unit: str, trail: tuple[str, ...]) -> None:
        assert unit not in trail, f"cycle in the layer table: {' → '.join([*trail, unit])}"
        if unit in done:
            return
        for below in table[unit]:
            visit(below, (*trail, unit))
        done.add(unit)

    for unit in table:
        visit(unit, ())


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b", re.DOTALL)
# The benchmark's bulk loads (funded wallets, a preloaded history) are the store's too
# (``qwallet.store.bulk_load``).
MONEY_WRITERS = ("store",)


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.search(node.value)
    ]


def test_only_the_store_writes_money() -> None:
    writers = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(SOURCE.rglob("*.py"))
        if unit_of(path) not in MONEY_WRITERS
        for line, text in sql_strings(path)
        if "INSERT INTO ledger_entries" in text
    ]
    assert writers == []


def test_http_handlers_and_pages_hold_no_sql() -> None:
    """They call the use cases of ``qwallet.service`` (the console's reads are in
    ``admin/queries.py``)."""
    handlers = [*(SOURCE / "api").rglob("*.py"), *(SOURCE / "web").rglob("*.py")]
    handlers += [SOURCE / "app.py", *(SOURCE / "admin").rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(handlers)
        if path.name != "queries.py"
        for line, _text in sql_strings(path)
    ]
    assert found == []
