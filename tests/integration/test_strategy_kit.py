"""The docs' way to start a strategy: copy the template and its tests, run pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_copied_template_and_its_tests_pass_in_the_users_own_folder(tmp_path: Path) -> None:
    package = tmp_path / "mystrategies"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "spread.py").write_text(
        (ROOT / "strategies" / "template.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    tests = tmp_path / "tests"
    tests.mkdir()
    shipped = (ROOT / "strategies" / "test_template.py").read_text(encoding="utf-8")
    assert 'STRATEGY = "strategies.template:TemplateStrategy"' in shipped
    (tests / "test_spread.py").write_text(
        shipped.replace("strategies.template:", "mystrategies.spread:"), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 passed" in ran.stdout
