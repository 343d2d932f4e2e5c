"""``trading-engine exchange-sim --dialect binance`` as a user runs it."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.integration.test_cli_validation import console_script, quiet_env
from tests.sim.binance.helpers import ed_public_pem


def start(tmp_path: Path, *flags: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [console_script(), "exchange-sim", "--dialect", "binance", *flags],
        cwd=tmp_path, env=quiet_env(TRADING_ENGINE__ENGINE__LOG_LEVEL="warning", **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_the_binance_dialect_serves_signed_requests_from_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    key_file = tmp_path / "ed25519.pem"
    key_file.write_bytes(ed_public_pem())
    process = start(
        tmp_path, "--port", str(port), "--duration", "30", "--clock-skew-ms", "0",
        "--ed25519-public-key", str(key_file), "--ed25519-api-key-env", "ED_KEY",
        EXCHANGE_API_KEY="hmackey", EXCHANGE_API_SECRET="s3cret", ED_KEY="edkey",
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"(binance dialect) on http://127.0.0.1:{port}" in line, process.stderr
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/v3/ping").json() == {}
        query = f"timestamp={time.time_ns() // 1_000_000}"
        signature = hmac.new(b"s3cret", query.encode(), hashlib.sha256).hexdigest()
        signed = httpx.get(
            f"{base}/api/v3/openOrders?{query}&signature={signature}",
            headers={"X-MBX-APIKEY": "hmackey"},
        )
        assert (signed.status_code, signed.json()) == (200, [])
        assert signed.headers["X-MBX-USED-WEIGHT-1M"] == "81"  # 1 for ping, 80 for every symbol
        # The Ed25519 key signs too (base64, percent-encoded).
        from urllib.parse import quote

        from tests.sim.binance.helpers import sign_ed25519

        query = f"timestamp={time.time_ns() // 1_000_000}"
        ed = httpx.get(
            f"{base}/api/v3/openOrders?{query}&signature={quote(sign_ed25519(query), safe='')}",
            headers={"X-MBX-APIKEY": "edkey"},
        )
        assert (ed.status_code, ed.json()) == (200, [])
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_weight_header_counts_the_limit_set_on_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    process = start(
        tmp_path, "--port", str(port), "--duration", "30", "--weight-limit", "3",
        EXCHANGE_API_KEY="hmackey", EXCHANGE_API_SECRET="s3cret",
    )  # fmt: skip
    try:
        assert process.stdout is not None
        process.stdout.readline()
        answers = [httpx.get(f"http://127.0.0.1:{port}/api/v3/ping") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[3].json()["code"] == -1003
        assert int(answers[3].headers["Retry-After"]) >= 1
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--dialect", "binance"], {"EXCHANGE_API_SECRET": ""},
         "--api-secret-env: the environment variable EXCHANGE_API_SECRET is not set"),
        (["--dialect", "binance", "--ed25519-public-key", "missing.pem"],
         {"EXCHANGE_API_SECRET": "s"}, "--ed25519-public-key and --ed25519-api-key-env"),
        (["--dialect", "binance", "--ed25519-public-key", "missing.pem",
          "--ed25519-api-key-env", "K"], {"EXCHANGE_API_SECRET": "s", "K": "k"},
         "--ed25519-public-key: missing.pem: cannot read a PEM public key"),
        (["--unknown-status", "0.5"], {}, "--unknown-status: a fault of the Binance dialect"),
        (["--dialect", "ftx"], {}, "invalid choice: 'ftx'"),
    ],
)  # fmt: skip
def test_bad_binance_flags_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [console_script(), "exchange-sim", "--port", str(free_port()), "--duration", "1", *args],
        cwd=tmp_path, env=quiet_env(**env), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert message in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr
