"""docs/design.md names the tests that hold the order path's rules: they exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _section() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    start = text.index("## The order path's rules, and the tests that hold them")
    return text[start : text.index("\n## ", start + 1)]


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_rule_has_tests_and_every_named_test_exists() -> None:
    section = _section()
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 6  # the header and the five rules
    for row in rows[1:]:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert named, row
        for path, name in named:
            assert name in _defined(ROOT / path), f"{path}::{name}"
    for name in re.findall(r"the invariant `(\w+)`", section):
        assert name in _defined(ROOT / "tests/engine/test_engine.py"), name
