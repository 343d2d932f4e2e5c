"""The deployment files: structure checked here, since no Docker engine runs in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trading_engine.commands.cli import build_parser
from trading_engine.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_has_the_four_services() -> None:
    services = compose()["services"]
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"engine", "exchange-sim", "prometheus", "grafana"}
    assert "127.0.0.1:9100:9100" in services["engine"]["ports"]
    assert "127.0.0.1:7001:7001" in services["engine"]["ports"]
    assert "127.0.0.1:3000:3000" in services["grafana"]["ports"]
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


def test_compose_publishes_every_port_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), (name, port)
            assert port.startswith("127.0.0.1:"), (name, port)
            assert len(port.split(":")) == 3, (name, port)


def test_compose_secrets_have_no_defaults() -> None:
    import re

    secrets = {"EXCHANGE_API_KEY", "TRADING_ENGINE_ADMIN_TOKEN"}
    seen = set()
    for service in compose()["services"].values():
        for key, value in service.get("environment", {}).items():
            if key in secrets:
                # ${NAME:?message}: compose refuses to start when NAME is unset or empty.
                assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", str(value)), (key, value)
                seen.add(key)
    assert seen == secrets
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":-" not in text  # no variable has a default


def test_every_service_using_the_image_can_build_it() -> None:
    services = compose()["services"]
    users = [s for s in services.values() if s.get("image") == "trading-engine:latest"]
    assert len(users) == 6
    # The feed services share the image the engine of their profile builds.
    for service in users:
        if service.get("build") != ".":
            assert service["depends_on"] == ["engine-venues"]
    assert services["engine-venues"]["build"] == "."


def test_readme_speaks_compose_v2_and_one_python_command() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme
    assert not re.search(r"docker-compose (up|down|run|build)", readme)
    assert re.search(r"\bpython3 -m", readme)
    assert not re.search(r"(?<![\w.])python -", readme)  # only python3, never bare python


@pytest.mark.parametrize(
    "service",
    ["engine", "exchange-sim", "engine-venues", "feed-binance", "feed-okx", "feed-kraken"],
)
def test_compose_commands_exist_in_the_cli(service: str) -> None:
    command = compose()["services"][service]["command"]
    assert command[0] == "trading-engine"
    args = build_parser().parse_args([str(part) for part in command[1:]])
    assert args.handler is not None


def test_compose_engine_environment_is_a_valid_configuration() -> None:
    engine = compose()["services"]["engine"]
    environment = {
        key: "set" if str(value).startswith("${") else str(value)
        for key, value in engine["environment"].items()
    }
    config = load_config(ROOT / "config" / "engine.toml", environ=environment)
    assert config.feed.host == "0.0.0.0"
    assert config.admin.host == "0.0.0.0"
    assert config.gateway.base_url == "http://exchange-sim:8080"
    sim = compose()["services"]["exchange-sim"]["command"]
    feed_target = sim[sim.index("--feed") + 1]
    assert feed_target == f"engine:{config.feed.port}"
    prometheus = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"engine:{config.admin.port}"]


def test_compose_volumes_point_at_files_in_the_repository() -> None:
    named = set(compose().get("volumes") or {})
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in named or (ROOT / source).exists(), source


def test_compose_keeps_the_engine_journal_on_a_named_volume() -> None:
    data = compose()
    engine = data["services"]["engine"]
    assert "engine-state:/app/state" in engine["volumes"]
    assert "engine-state" in data["volumes"]
    config = load_config(ROOT / "config" / "engine.toml", environ={})
    assert config.journal.path == "state/journal.db"  # relative to WORKDIR /app
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#")
    assert "FROM python:3.11-slim" in text
    assert "\nUSER trader\n" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    for copied in ("trading_engine", "strategies", "config", "pyproject.toml", "setup.py"):
        assert (ROOT / copied).exists()
    # The image builds the compiled core and refuses to ship the pure one.
    assert "COPY pyproject.toml setup.py" in text
    assert "assert t.compiled" in text


def test_grafana_provisioning_and_dashboard() -> None:
    datasource = yaml.safe_load(
        (ROOT / "config/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load(
        (ROOT / "config/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((ROOT / "config/grafana/dashboards/trading-engine.json").read_text())
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for needed in ("tick-to-trade", "heatmap", "per-stage", "feed messages", "rejections",
                   "book states", "orders by status", "risk denials", "breaker", "loop lag",
                   "positions", "pnl", "strategy state", "strategy orders",
                   "strategy denials", "strategy positions", "strategy pnl",
                   "last decision", "feed handlers: venue messages", "feed handlers: resyncs",
                   "receive-to-publish"):  # fmt: skip
        assert needed in titles, needed
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    assert [row["title"] for row in rows] == ["Strategies", "Feed handlers"]
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"]) for panel in graphs)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    import re

    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from tests.fakes import config
    from trading_engine.engine.engine import Engine
    from trading_engine.engine.telemetry import GcMonitor, LoopMonitor, registry_for
    from trading_engine.io.feedhandler import EngineAddress, FeedHandler
    from trading_engine.sim.venue import simulated_venue
    from trading_engine.venues.registry import venue

    engine = Engine(config(), run_id="t", sink_factory=simulated_venue)
    text = generate_latest(registry_for(engine, LoopMonitor(), GcMonitor())).decode()
    # The feed handler panels query a feed handler's own /metrics.
    handler_registry = CollectorRegistry()
    FeedHandler(
        venue("binance").feed_dialect(["BTCUSDT"], "http://127.0.0.1:9"),
        ws_url="ws://127.0.0.1:9",
        engines=[EngineAddress("127.0.0.1", 9)],
        symbol_map={"BTCUSDT": "BTCUSDT"},
        registry=handler_registry,
    )
    text += generate_latest(handler_registry).decode()
    exported = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    suffixed = {f"{name}{suffix}" for name in exported
                for suffix in ("", "_total", "_bucket", "_sum", "_count")}  # fmt: skip
    dashboard = json.loads((ROOT / "config/grafana/dashboards/trading-engine.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"trading_engine_\w+", expr)}
    assert used - suffixed == set()


def test_promtool_accepts_prometheus_yml() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs prometheus)")
        pytest.skip("promtool is not installed")
    done = subprocess.run(
        [promtool, "check", "config", str(ROOT / "config" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("venue", ["binance", "okx", "kraken"])
def test_compose_feed_services_publish_to_the_venues_engine(venue: str) -> None:
    """Each feed service's [[feeds]] entry exists, targets engine-venues and serves /metrics."""
    services = compose()["services"]
    engine = services["engine-venues"]
    config_path = engine["command"][engine["command"].index("--config") + 1]
    config = load_config(ROOT / config_path.removeprefix("/app/"), environ={})
    service = services[f"feed-{venue}"]
    command = service["command"]
    assert command[1:3] == ["feed", venue]
    assert command[command.index("--config") + 1] == config_path
    args = build_parser().parse_args(command[1:])
    assert args.metrics_host == "0.0.0.0"
    entry = next(feed for feed in config.feeds if feed.venue == venue)
    assert not entry.spawn  # compose runs it, not the engine
    assert entry.to == [f"engine-venues:{config.feed.port}"]
    assert f"127.0.0.1:{entry.metrics_port}:{entry.metrics_port}" in service["ports"]
    for symbol in entry.engine_symbols().values():
        assert symbol in config.instrument_map()
    assert f"127.0.0.1:{config.feed.port}:{config.feed.port}" in engine["ports"]
