"""``check-config`` and ``run`` agree: the installed console script, as a user runs it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "config" / "engine.toml").read_text(encoding="utf-8")


def console_script() -> str:
    """The ``trading-engine`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "trading-engine"
    if script.exists():
        return str(script)
    found = shutil.which("trading-engine")
    assert found is not None, "the trading-engine console script is not installed"
    return found


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], cwd=cwd, env=env if env is not None else dict(os.environ),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment with free ports for the engine and an API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    env.update(
        EXCHANGE_API_KEY="k",
        TRADING_ENGINE__FEED__PORT=str(free_port()),
        TRADING_ENGINE__ADMIN__PORT=str(free_port()),
        TRADING_ENGINE__GATEWAY__MODE="simulated",
    )
    env.update(extra)
    return env


BAD = [
    pytest.param(
        DEFAULT.replace('trigger_price = "100.00"', 'trigger_price = "100.005"'),
        "strategies[0].params.trigger_price: '100.005' is not a valid price for BTC-USD",
        id="trigger-off-tick",
    ),
    pytest.param(
        DEFAULT.replace('quantity = "0.05"', 'quantity = "0.0505"'),
        "strategies[1].params.quantity: '0.0505' is not a valid size for ETH-USD",
        id="quantity-off-lot",
    ),
    pytest.param(
        DEFAULT.replace("strategies.market_maker:MarketMaker", "x.y:Maker"),
        "strategies[1].class: cannot import 'x.y': No module named 'x'",
        id="class-not-importable",
    ),
    pytest.param("", "instruments: no [[instruments]] entry", id="empty-file"),
    pytest.param(
        DEFAULT.replace('max_order_notional = "1000000"', 'max_order_notional = "1e50"'),
        "risk.max_order_notional: Value error, expected a decimal between 1e-40 and 1e40",
        id="notional-out-of-range",
    ),
]
if importlib.util.find_spec("uvloop") is None:
    BAD.append(
        pytest.param(
            DEFAULT.replace('loop = "priority"', 'loop = "uvloop"'),
            "engine.loop: 'uvloop' is not installed",
            id="uvloop-missing",
        )
    )


@pytest.mark.parametrize(("text", "problem"), BAD)
def test_check_config_and_run_refuse_the_same_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(text, encoding="utf-8")
    checked = cli("check-config", str(path), cwd=tmp_path, env=quiet_env())
    assert checked.returncode == 2, checked
    assert f"  {problem}" in checked.stderr
    ran = cli("run", "--config", str(path), "--duration", "0", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 2, ran
    assert problem in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_huge_notional_limit_checks_valid_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        DEFAULT.replace('max_order_notional = "1000000"', 'max_order_notional = "1e30"'),
        encoding="utf-8",
    )
    checked = cli("check-config", str(path), cwd=tmp_path, env=quiet_env())
    assert checked.returncode == 0, checked
    assert "valid (2 instrument(s), 2 strategies)" in checked.stdout
    ran = cli("run", "--config", str(path), "--duration", "0.2", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr


def test_check_config_notes_an_unset_api_key_that_run_requires(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(DEFAULT, encoding="utf-8")
    env = {k: v for k, v in quiet_env().items() if k not in ("EXCHANGE_API_KEY",)}
    del env["TRADING_ENGINE__GATEWAY__MODE"]
    checked = cli("check-config", str(path), cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked
    assert "EXCHANGE_API_KEY is not set; run refuses to start until it is" in checked.stderr
    assert not (tmp_path / "state").exists()  # checking a file creates no journal
    ran = cli("run", "--config", str(path), "--duration", "0", cwd=tmp_path, env=env)
    assert ran.returncode == 2
    assert "gateway.api_key_env: the environment variable EXCHANGE_API_KEY is not set" in (
        ran.stderr
    )


def listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port: int = sock.getsockname()[1]
    return sock, port


@pytest.mark.parametrize(("section", "workers"), [("feed", "1"), ("admin", "1"), ("admin", "2")])
def test_run_on_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, section: str, workers: str
) -> None:
    sock, port = listening_socket()
    with sock:
        env = quiet_env(**{f"TRADING_ENGINE__{section.upper()}__PORT": str(port)})
        (tmp_path / "engine.toml").write_text(DEFAULT, encoding="utf-8")
        ran = cli(
            "run", "--config", "engine.toml", "--duration", "5", "--workers", workers,
            cwd=tmp_path, env=env,
        )  # fmt: skip
    assert ran.returncode == 2, ran
    assert "Traceback" not in ran.stderr
    errors = [line for line in ran.stderr.splitlines() if not line.startswith("{")]
    assert errors == [
        f"trading-engine: invalid configuration: {section}.port {port} is already in use "
        "(on 127.0.0.1)"
    ]


def test_exchange_sim_on_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sock, port = listening_socket()
    with sock:
        ran = cli(
            "exchange-sim", "--port", str(port), "--duration", "5", cwd=tmp_path,
            env=quiet_env(TRADING_ENGINE__ENGINE__LOG_LEVEL="warning"),
        )  # fmt: skip
    assert ran.returncode == 2, ran
    assert ran.stderr.strip().splitlines()[-1] == (
        f"trading-engine: --port {port} is already in use (on 127.0.0.1)"
    )
    assert "Traceback" not in ran.stderr


def test_a_strategy_in_the_users_own_package_loads_from_the_current_directory(
    tmp_path: Path,
) -> None:
    package = tmp_path / "mystrategies"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    template = (ROOT / "strategies" / "template.py").read_text(encoding="utf-8")
    (package / "spread.py").write_text(template, encoding="utf-8")
    config = DEFAULT.split("[[strategies]]", 1)[0] + (
        "[[strategies]]\n"
        'name = "mine"\n'
        'class = "mystrategies.spread:TemplateStrategy"\n'
        'symbols = ["BTC-USD"]\n'
        'params = { quantity = "0.001", max_spread_ticks = 3 }\n'
    )
    (tmp_path / "my.toml").write_text(config, encoding="utf-8")
    checked = cli("check-config", "my.toml", cwd=tmp_path, env=quiet_env())
    assert checked.returncode == 0, checked
    assert "valid (2 instrument(s), 1 strategy)" in checked.stdout
    ran = cli("run", "--config", "my.toml", "--duration", "0.3", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 0, ran.stderr
    assert "template strategy starting on BTC-USD" in ran.stderr  # its on_start ran
    # From another directory the same module is not found, and the error says where.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checked = cli("check-config", str(tmp_path / "my.toml"), cwd=elsewhere, env=quiet_env())
    assert checked.returncode == 2
    assert (
        "strategies[0].class: cannot import 'mystrategies.spread': "
        "No module named 'mystrategies'" in checked.stderr
    )


def test_run_needs_a_configuration_and_logs_which_it_loaded(tmp_path: Path) -> None:
    ran = cli("run", "--duration", "0.2", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip() == (
        "trading-engine: run: no --config given and no config/engine.toml here "
        "(`trading-engine demo` runs the built-in configuration against the simulator)"
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "engine.toml").write_text(DEFAULT, encoding="utf-8")
    ran = cli("run", "--duration", "0.2", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 0, ran.stderr
    assert "loaded configuration config/engine.toml: 2 instrument(s), 2 strategies" in ran.stderr
    (tmp_path / "mine.toml").write_text(DEFAULT, encoding="utf-8")
    ran = cli("run", "--config", "mine.toml", "--duration", "0.2", cwd=tmp_path, env=quiet_env())
    assert ran.returncode == 0, ran.stderr
    assert "loaded configuration mine.toml: 2 instrument(s), 2 strategies" in ran.stderr


def test_exchange_sim_without_feed_warns_that_it_publishes_nothing(tmp_path: Path) -> None:
    ran = cli(
        "exchange-sim", "--port", str(free_port()), "--duration", "0.2", cwd=tmp_path,
        env=quiet_env(TRADING_ENGINE__ENGINE__LOG_LEVEL="warning"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "warning: no --feed HOST:PORT: the simulator publishes no market data" in ran.stderr


@pytest.mark.parametrize(
    "command", ["run", "demo", "replay", "exchange-sim", "check-config", "bench"]
)
def test_every_option_of_every_command_shows_its_default(tmp_path: Path, command: str) -> None:
    shown = cli(command, "--help", cwd=tmp_path, env=quiet_env(COLUMNS="200"))
    assert shown.returncode == 0, shown.stderr
    options = shown.stdout.split("options:", 1)[1]
    blocks: list[str] = []
    for line in options.splitlines():
        if line.startswith("  -"):
            blocks.append(line)
        elif blocks:
            blocks[-1] += " " + line.strip()
    others = [block for block in blocks if not block.startswith("  -h, --help")]
    assert others or command == "check-config", shown.stdout
    for block in others:
        assert "default" in block, block
