"""The Python examples of docs/partner-kit.md run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "partner-kit.md"


def test_doc_examples_run() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "partner_kit_doc"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name}:block{number}", "exec"), namespace)
