"""The Prometheus alert rules (config/alerts.yml) and their unit tests (config/alerts_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ci_binary
from tests.metric_names import exported_metric_names

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "alerts.yml"
RULE_TESTS = ROOT / "config" / "alerts_test.yml"
SEVERITIES = {"critical", "warning", "info"}


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ci_binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    done = run_promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_every_rule_pass() -> None:
    done = run_promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("EventLoopLagging", "> 0.01\n", "> 0.05\n"),  # a threshold too high: never fires
        ("TradingHalted", '{who!="admin"} == 1', " == 1"),  # an operator's halt would page
        # fires too soon:
        ("EngineNotReady", "ready == 0\n        for: 2m", "ready == 0\n        for: 1m"),
        ("TargetDown", 'up{profile=""} == 0\n          or', "up == 0 or"),  # a profile not run
        ("CircuitBreakerOpen", "_state > 0", "_state == 2"),  # blind to open/half-open flapping
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, alert: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert text.count(old) == 1, old
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    done = run_promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert f"alertname: {alert}," in done.stdout + done.stderr


def test_every_rule_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group["alert_rule_test"]:
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fires == set()
    assert names - quiet == set()


def test_every_rule_has_a_for_a_severity_and_a_runbook_in_the_docs() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    headings = re.findall(r"^### (\w+)$", operations, re.MULTILINE)
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        assert notes["runbook"] == f"docs/operations.md#{name.lower()}", name
        assert name in headings, f"docs/operations.md has no '### {name}'"
    # Every alert the docs describe exists.
    section = operations.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^### (\w+)$", section, re.MULTILINE)) == set(names)


def test_every_metric_the_rules_use_is_exported() -> None:
    exported = exported_metric_names()
    for rule in rules():
        used = set(re.findall(r"trading_engine_\w+", rule["expr"]))
        assert used or rule["alert"] == "TargetDown", rule["alert"]
        assert used - exported == set(), rule["alert"]
        # Names the annotations point to are families (a histogram's too).
        named = set(re.findall(r"trading_engine_\w+", " ".join(rule["annotations"].values())))
        families = {name for name in named if name in exported or f"{name}_bucket" in exported}
        assert named == families, rule["alert"]
    target_rule = next(rule for rule in rules() if rule["alert"] == "TargetDown")
    assert re.findall(r"\b(\w+)\{", target_rule["expr"]) == ["up", "up", "up"]


def test_prometheus_yml_loads_the_rules_and_marks_the_optional_profile() -> None:
    prometheus = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]  # beside it, here and in the container
    # Every scrape target of a compose profile carries it, so TargetDown
    # stays quiet while the profile is not started.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for job in prometheus["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                service = compose[target.split(":")[0]]
                profiles = service.get("profiles", [])
                assert static.get("labels", {}).get("profile") == (
                    profiles[0] if profiles else None
                ), target
