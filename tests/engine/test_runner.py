"""Starting the service: a failure half-way undoes what started."""

from __future__ import annotations

import socket

import pytest

from tests.fakes import Recorder, config
from trading_engine.core.errors import ConfigError
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import Service
from trading_engine.sim.venue import simulated_venue

STRATEGIES = [
    {"name": "a", "class": "tests.fakes:Recorder", "symbols": ["BTC-USD"]},
    {"name": "b", "class": "tests.fakes:Recorder", "symbols": ["ETH-USD"]},
]


@pytest.mark.asyncio
async def test_no_strategy_starts_when_the_feed_cannot_listen() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = config(STRATEGIES, feed={"port": port}, admin={"port": 0})
        engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
        service = Service(engine, environ={})
        with pytest.raises(ConfigError, match=rf"^feed.port {port} is already in use"):
            await service.start()
    # The feed binds before reconciliation and the strategies: nothing started.
    for name in ("a", "b"):
        recorder = engine.runners[name].strategy
        assert isinstance(recorder, Recorder)
        assert recorder.calls == []
    assert engine.reconciliation is None
    assert engine.feed is None
    assert service.admin._runner is None  # the admin API was stopped too


@pytest.mark.asyncio
async def test_nothing_starts_when_the_admin_port_is_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = config(STRATEGIES, feed={"port": 0}, admin={"port": port})
        engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
        with pytest.raises(ConfigError, match=rf"^admin.port {port} is already in use"):
            await Service(engine, environ={}).start()
    recorder = engine.runners["a"].strategy
    assert isinstance(recorder, Recorder)
    assert recorder.calls == []


@pytest.mark.asyncio
async def test_a_capture_file_that_cannot_be_written_names_its_key_not_the_port() -> None:
    cfg = config(
        STRATEGIES, feed={"port": 0, "capture_path": "/nonexistent/x.cap"}, admin={"port": 0}
    )
    engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
    with pytest.raises(ConfigError) as refused:
        await Service(engine, environ={}).start()
    assert refused.value.problems == [
        "feed.capture_path: cannot write /nonexistent/x.cap: No such file or directory"
    ]
    assert engine.feed is None
