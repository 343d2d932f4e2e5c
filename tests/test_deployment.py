"""The deployment files: structure checked here, since no Docker engine runs in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ci_binary
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
                   "receive-to-publish", "snapshot pause", "oversized updates",
                   "journal failures", "journal: rows written",
                   "order faults", "gateway events", "readiness",
                   "venue: user data stream", "venue: clock offset"):  # fmt: skip
        assert needed in titles, needed
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    assert [row["title"] for row in rows] == [
        "Strategies", "Feed handlers", "Journal and order faults", "Venue"
    ]  # fmt: skip
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"]) for panel in graphs)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    import re

    from tests.metric_names import exported_metric_names

    dashboard = json.loads((ROOT / "config/grafana/dashboards/trading-engine.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"trading_engine_\w+", expr)}
    assert used - exported_metric_names() == set()


def test_promtool_accepts_prometheus_yml() -> None:
    done = subprocess.run(
        [ci_binary("promtool"), "check", "config", str(ROOT / "config" / "prometheus.yml")],
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


def _image_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == "trading-engine:latest"
    }


def test_compose_mounts_the_config_and_the_strategies_folder_read_only() -> None:
    """The configuration and the user's strategies come from the checkout, not the image."""
    services = _image_services()
    for name, service in services.items():
        command = service["command"]
        config_path = command[command.index("--config") + 1]
        assert config_path.startswith("/app/config/"), name
        assert (ROOT / config_path.removeprefix("/app/")).is_file(), name
        assert "./config:/app/config:ro" in service["volumes"], name
    engines = {name for name, service in services.items() if service["command"][1] == "run"}
    assert engines == {"engine", "engine-venues"}
    for name in engines:
        assert "./mystrategies:/app/mystrategies:ro" in services[name]["volumes"], name
    # The folder exists in the checkout (compose would create it as root otherwise),
    # is not baked into the image, and the engine runs in /app, where it is mounted.
    assert (ROOT / "mystrategies").is_dir()
    assert "mystrategies" in (ROOT / ".dockerignore").read_text().split()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile
    assert "mystrategies" not in dockerfile


def test_compose_prometheus_loads_the_alert_rules() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1)[::-1] for volume in prometheus["volumes"])
    config_file = next(
        part.split("=", 1)[1] for part in prometheus["command"] if part.startswith("--config.file")
    )
    settings = yaml.safe_load((ROOT / mounts[config_file].removeprefix("./")).read_text())
    # rule_files are relative to the configuration file's directory.
    for rule_file in settings["rule_files"]:
        in_container = str(Path(config_file).parent / rule_file)
        assert mounts[in_container] == "./config/alerts.yml", in_container
    assert all(volume.endswith(":ro") for volume in prometheus["volumes"])


def test_docker_compose_accepts_the_file() -> None:
    """``docker compose config`` (or Compose v1) where a client has it; no engine needed."""
    commands = []
    if shutil.which("docker"):
        commands.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        commands.append(["docker-compose"])
    env = {**os.environ, "EXCHANGE_API_KEY": "k", "TRADING_ENGINE_ADMIN_TOKEN": "t"}
    for command in commands:
        probe = subprocess.run(
            [*command, "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            continue
        for profile in ([], ["--profile", "venues"]):
            done = subprocess.run(
                [*command, *profile, "config", "-q"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        # Its secrets have no defaults: without them compose refuses.
        unset = {k: v for k, v in env.items() if k != "EXCHANGE_API_KEY"}
        done = subprocess.run(
            [*command, "config", "-q"],
            cwd=ROOT, env=unset, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode != 0
        assert "EXCHANGE_API_KEY" in done.stderr
        return
    pytest.skip("no docker compose (or docker-compose) client here")


def _container_layout(app: Path, service: dict[str, Any]) -> None:
    """Lay out ``app`` as the service's /app: its bind mounts, from the checkout."""
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            shutil.copytree(ROOT / source, app / target.removeprefix("/app/"))
        else:
            (app / target.removeprefix("/app/")).mkdir(parents=True)  # a named volume


def _mine(app: Path) -> None:
    """The docs' steps: a strategy in mystrategies/, a [[strategies]] entry pointing at it."""
    (app / "mystrategies" / "spread.py").write_text(
        (ROOT / "strategies" / "template.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    config = app / "config" / "engine.toml"
    shipped = config.read_text(encoding="utf-8")
    config.write_text(
        shipped.split("[[strategies]]", 1)[0] + "[[strategies]]\n"
        'name = "mine"\n'
        'class = "mystrategies.spread:TemplateStrategy"\n'
        'symbols = ["BTC-USD"]\n'
        'params = { quantity = "0.001", max_spread_ticks = 3 }\n',
        encoding="utf-8",
    )


def _console_script() -> str:
    script = Path(sys.executable).parent / "trading-engine"
    found = str(script) if script.exists() else shutil.which("trading-engine")
    assert found is not None, "the trading-engine console script is not installed"
    return found


def _native(command: list[str], app: Path, names: dict[str, str]) -> list[str]:
    """A compose command run from ``app``: /app paths and service addresses mapped."""
    out = [_console_script()]
    for part in command[1:]:
        part = str(part)
        if part.startswith("/app/"):
            part = str(app / part.removeprefix("/app/"))
        out.append(names.get(part, part))
    return out


def test_a_strategy_in_the_mounted_folder_passes_check_config_as_in_the_container(
    tmp_path: Path,
) -> None:
    engine = compose()["services"]["engine"]
    app = tmp_path / "app"
    _container_layout(app, engine)
    _mine(app)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    check = ["trading-engine", "check-config", "/app/config/engine.toml"]
    checked = subprocess.run(
        _native(check, app, {}), cwd=app, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "valid (2 instrument(s), 1 strategy)" in checked.stdout
    # Without the mount the same configuration names what it cannot import.
    shutil.rmtree(app / "mystrategies")
    checked = subprocess.run(
        _native(check, app, {}), cwd=app, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 2
    assert "strategies[0].class: cannot import 'mystrategies.spread'" in checked.stderr


@pytest.mark.slow
def test_a_strategy_in_the_mounted_folder_trades_with_the_compose_commands(
    tmp_path: Path,
) -> None:
    """The engine and simulator services' commands and environment, run natively from /app."""
    import time

    import httpx

    from tests.helpers import free_port

    services = compose()["services"]
    engine, sim = services["engine"], services["exchange-sim"]
    app = tmp_path / "app"
    _container_layout(app, engine)
    _mine(app)
    feed_port, admin_port, sim_port = free_port(), free_port(), free_port()
    secrets = {"EXCHANGE_API_KEY": "k", "TRADING_ENGINE_ADMIN_TOKEN": "t"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    env = dict(base)
    for key, value in engine["environment"].items():
        env[key] = secrets.get(key, str(value))
    # The container's listening addresses and service names, on loopback.
    assert env.pop("TRADING_ENGINE__GATEWAY__BASE_URL") == "http://exchange-sim:8080"
    env.update(
        TRADING_ENGINE__FEED__HOST="127.0.0.1", TRADING_ENGINE__FEED__PORT=str(feed_port),
        TRADING_ENGINE__ADMIN__HOST="127.0.0.1", TRADING_ENGINE__ADMIN__PORT=str(admin_port),
        TRADING_ENGINE__GATEWAY__BASE_URL=f"http://127.0.0.1:{sim_port}",
    )  # fmt: skip
    sim_env = {**base, **{key: secrets.get(key, str(v)) for key, v in sim["environment"].items()}}
    names = {"0.0.0.0": "127.0.0.1", "8080": str(sim_port), "engine:7001": f"127.0.0.1:{feed_port}"}
    logs = [(tmp_path / name).open("w") for name in ("engine.log", "sim.log")]
    running = subprocess.Popen(
        _native(engine["command"], app, {}), cwd=app, env=env, stdout=logs[0], stderr=logs[0]
    )
    simulator = subprocess.Popen(
        _native(sim["command"], app, names), cwd=app, env=sim_env, stdout=logs[1], stderr=logs[1]
    )
    try:

        def status() -> dict[str, Any]:
            assert running.poll() is None, (tmp_path / "engine.log").read_text()
            try:
                answer: dict[str, Any] = httpx.get(
                    f"http://127.0.0.1:{admin_port}/status", timeout=2
                ).json()
            except httpx.HTTPError:
                return {}
            return answer

        # on_start counts as a decision; one made after the book went live is on_book's.
        decisions: list[str] = []
        deadline = time.monotonic() + 60
        while len(set(decisions)) < 2:
            assert time.monotonic() < deadline, (tmp_path / "engine.log").read_text()
            now = status()
            if now.get("books", {}).get("BTC-USD", {}).get("state") == "live":
                decisions.append(now["strategies"]["mine"]["last_decision_at"])
            time.sleep(0.1)
        assert now["strategies"]["mine"]["state"] == "running"
        assert now["strategies"]["mine"]["errors"] == 0
    finally:
        for process in (running, simulator):
            process.terminate()
        for process in (running, simulator):
            process.wait(timeout=30)
        for log in logs:
            log.close()
    assert "template strategy starting on BTC-USD" in (tmp_path / "engine.log").read_text()


def test_the_binance_testnet_file_is_valid_and_keeps_the_safety_checklist() -> None:
    """docs/venues.md's testnet walk-through: the file it runs, and its safety settings."""
    path = ROOT / "config" / "binance-testnet.toml"
    environ = {"BINANCE_TESTNET_API_KEY": "k", "BINANCE_TESTNET_SECRET_KEY": "s"}
    config = load_config(path, environ=environ)
    assert config.gateway.venue == "binance"
    assert config.gateway.base_url == "https://testnet.binance.vision"
    assert config.engine.initial_trading_state == "halted"
    assert config.journal.unknown_orders == "refuse"
    assert len(config.instruments) == 1
    assert "testnet" in (config.feeds[0].ws_url or "")
    done = subprocess.run(
        [sys.executable, "-m", "trading_engine", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("BINANCE_TESTNET_")},
    )  # fmt: skip
    assert done.returncode == 2  # the keys are not set here: named, exit 2
    assert "BINANCE_TESTNET_SECRET_KEY" in done.stderr + done.stdout


def test_every_image_service_health_checks_a_port_it_serves() -> None:
    """The image's healthcheck asks the default admin port (9100): a service that
    serves elsewhere, or serves no admin API, has its own."""
    import re

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "'9100') + '/healthz'" in dockerfile
    for name, service in _image_services().items():
        command = service["command"]
        check = service.get("healthcheck")
        if command[1] == "run":
            config_path = command[command.index("--config") + 1]
            config = load_config(ROOT / config_path.removeprefix("/app/"), environ={})
            admin = int(service.get("environment", {}).get("TRADING_ENGINE__ADMIN__PORT", 0)) or (
                config.admin.port
            )
            if check is None:
                assert admin == 9100, name  # the image's own check
                continue
            assert f"http://127.0.0.1:{admin}/healthz" in " ".join(check["test"]), name
        else:
            assert check is not None, f"{name} has no admin API: it needs its own healthcheck"
            text = " ".join(check["test"])
            published = {p.rsplit(":", 1)[1] for p in service.get("ports", [])}
            checked = re.findall(r"127\.0\.0\.1\D{0,4}(\d+)", text)
            assert checked, (name, text)
            assert set(checked) <= published, (name, checked, published)
