"""Two real ``trading-engine run`` processes on one journal: the second is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from trading_engine import Instrument
from trading_engine.sim.exchange_sim import ExchangeSimulator

ROOT = Path(__file__).resolve().parents[2]
KEY = "owner-key"
BTC = Instrument("BTC-USD", "0.01", "0.001")


def write_config(folder: Path, name: str, sim_port: int, journal: Path) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[engine]
log_level = "warning"
shutdown_s = 1.0

[feed]
port = {free_port()}

[admin]
port = {free_port()}

[gateway]
base_url = "http://127.0.0.1:{sim_port}"

[journal]
path = "{journal}"

[[instruments]]
symbol = "BTC-USD"
tick_size = "0.01"
lot_size = "0.001"
"""
    )
    return path


async def trading_engine(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine", *args,
        cwd=ROOT, env={**os.environ, "EXCHANGE_API_KEY": KEY},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_second_engine_on_a_held_journal_exits_2_naming_the_holder(
    tmp_path: Path,
) -> None:
    sim = ExchangeSimulator([BTC], api_key=KEY, port=0, seed=3)
    await sim.start()
    journal = tmp_path / "journal.db"
    first_config = write_config(tmp_path, "first", sim.port, journal)
    admin_port = int(first_config.read_text().split("[admin]\nport = ")[1].split()[0])
    first = await trading_engine("run", "--config", str(first_config))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as client:
            for _ in range(600):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert first.returncode is None, "the first engine exited"
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the first engine never became ready")
            canceled_before = sim.counts.get("canceled", 0)

            second_config = write_config(tmp_path, "second", sim.port, journal)
            second = await trading_engine("run", "--config", str(second_config))
            _, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 2, err
            lines = [line for line in err.decode().splitlines() if "trading-engine:" in line]
            assert len(lines) == 1, err
            assert (
                f"in use by another engine (pid {first.pid} on host {socket.gethostname()})"
                in (lines[0])
            )

            # Reading the journal needs no lock: it works while the engine runs.
            reader = await trading_engine("journal", "--config", str(first_config), "orders")
            out, err = await asyncio.wait_for(reader.communicate(), 60)
            assert reader.returncode == 0, err
            assert out.decode().splitlines()[0].split()[0] == "created"

            # The first engine is untouched: still ready, nothing of it canceled.
            assert (await client.get("/readyz")).status_code == 200
            assert sim.counts.get("canceled", 0) == canceled_before
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
        # Released at exit: the next engine starts on it.
        third = await trading_engine("run", "--config", str(second_config), "--duration", "0.5")
        _, err = await asyncio.wait_for(third.communicate(), 60)
        assert third.returncode == 0, err
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        await sim.stop()
