"""HTTPS on both order paths, on loopback, with a certificate the test makes."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fakes import config
from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.core.orders import OrderStatus, TimeInForce
from trading_engine.engine.runner import build_engine
from trading_engine.io.fastpath import FastOrderChannel
from trading_engine.io.gateway import HttpGateway, ssl_context
from trading_engine.sim.exchange_sim import ExchangeSimulator

KEY = "tls-key"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own certificate authority)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest_asyncio.fixture
async def simulator(certificate: tuple[Path, Path]) -> AsyncIterator[ExchangeSimulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*certificate)
    sim = ExchangeSimulator(
        [Instrument("BTC-USD", "0.01", "0.001"), Instrument("ETH-USD", "0.01", "0.001")],
        api_key=KEY, port=0, rate=200, seed=1, ssl_context=server,
    )  # fmt: skip
    await sim.start()
    yield sim
    await sim.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["fast", "httpx"])
async def test_orders_fills_and_reads_over_https(
    simulator: ExchangeSimulator, certificate: tuple[Path, Path], mode: str
) -> None:
    cfg = config(
        feed={"host": "127.0.0.1", "port": 0},
        gateway={"base_url": f"https://127.0.0.1:{simulator.port}", "mode": mode,
                 "ca_file": str(certificate[0]), "fills_poll_s": 0.02},
        risk={"max_position": "1000"},
    )  # fmt: skip
    engine = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    await engine.start()
    assert engine.feed is not None
    simulator.publish_to("127.0.0.1", engine.feed.port)
    await wait_until(lambda: engine.builder.books["BTC-USD"].state.value == "live", 10)
    if gateway.fast is not None:
        fast = gateway.fast
        await wait_until(lambda: len(list(fast.connections())) == fast.size, 5, "warm")
    ask = engine.builder.books["BTC-USD"].book.best_ask
    assert ask is not None
    order = engine.contexts["probe"].buy("BTC-USD", 1, ask, TimeInForce.IOC)
    assert order is not None
    await wait_until(lambda: order.status is OrderStatus.FILLED, 5, "filled")
    # The fills feed (httpx, over TLS too) moved the position.
    await wait_until(lambda: engine.positions.quantity("BTC-USD") == 1, 5, "position")
    if mode == "fast":
        assert gateway.fast is not None
        assert gateway.fast.sent == 1
    assert simulator.orders[order.client_order_id].status == "filled"
    await engine.stop(2)


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_refused(simulator: ExchangeSimulator) -> None:
    channel = FastOrderChannel(
        f"https://127.0.0.1:{simulator.port}", KEY, 1, ssl_context=ssl_context(None),
        backoff_s=0.01, backoff_max_s=0.02,
    )  # fmt: skip
    await channel.start(within_s=0.2)
    await wait_until(lambda: channel.connect_failures >= 2, 5, "failed handshakes")
    assert list(channel.connections()) == []
    assert channel.try_send(b"{}") is None
    await channel.close()


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    from trading_engine.core.errors import ConfigError

    cfg = config(gateway={"base_url": "https://127.0.0.1:1", "ca_file": str(tmp_path / "no.pem")})
    with pytest.raises(ConfigError, match=r"gateway\.ca_file: cannot load"):
        build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
