"""The venue clock: the offset arithmetic on fake time, then against a shifted simulator."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from tests.helpers import wait_until
from tests.sim.binance.helpers import SECRET, SYMBOL, running
from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.instruments import Instrument
from trading_engine.venues.binance.clock import (
    ClockSample,
    ClockSkewError,
    ClockUnavailable,
    VenueClock,
    best_sample,
    rest_time_fetcher,
    sample_from,
    skew_problem,
)
from trading_engine.venues.binance.orders import BinanceSpotCodec
from trading_engine.venues.binance.signing import HmacSha256Signer

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
MS = 1_000_000


class FakeHost:
    """A host whose wall clock is ``wall_ns`` and whose requests take the given trips."""

    def __init__(self, venue_ahead_ms: int, trips_ms: list[int]) -> None:
        self.mono_ns = 10**12
        self.wall_ns = 1_700_000_000_000 * MS
        self.venue_ahead_ms = venue_ahead_ms
        self.trips_ms = list(trips_ms)
        self.requests = 0

    def wall(self) -> int:
        return self.wall_ns

    def mono(self) -> int:
        return self.mono_ns

    def advance(self, ns: int) -> None:
        self.mono_ns += ns
        self.wall_ns += ns

    async def fetch(self) -> bytes:
        """The venue reads its clock halfway through the trip."""
        self.requests += 1
        trip = self.trips_ms.pop(0) * MS
        self.advance(trip // 2)
        server_ms = self.wall_ns // MS + self.venue_ahead_ms
        self.advance(trip - trip // 2)
        return orjson.dumps({"serverTime": server_ms})

    def clock(self, samples: int = 3) -> VenueClock:
        return VenueClock(self.fetch, samples=samples, wall_ns=self.wall, monotonic_ns=self.mono)


def test_a_sample_is_the_offset_to_the_round_trips_midpoint() -> None:
    # Sent at mono 0, back at mono 40 ms; the wall clock said 1,000,040 ms at the answer.
    sample = sample_from(0, 40 * MS, 1_000_040 * MS, server_ms=1_005_020)
    assert sample == ClockSample(5000 * MS, 40 * MS, 1_005_020)
    assert (sample.offset_ms, sample.round_trip_ms) == (5000.0, 40.0)
    with pytest.raises(ValueError, match="round trip"):
        sample_from(10, 5, 0, 1)


def test_the_best_sample_is_the_one_with_the_smallest_round_trip() -> None:
    samples = [ClockSample(900 * MS, 30 * MS, 1), ClockSample(1000 * MS, 2 * MS, 2)]
    assert best_sample(samples).server_ms == 2
    with pytest.raises(ValueError, match="no clock sample"):
        best_sample([])


def test_the_skew_rules_name_the_measured_offset() -> None:
    behind = skew_problem(ClockSample(7312 * MS, 4 * MS, 1), 5000)
    assert behind is not None
    assert "7312 ms behind" in behind
    assert "5000 ms" in behind
    ahead = skew_problem(ClockSample(-6000 * MS, 4 * MS, 1), 5000)
    assert ahead is not None
    assert "6000 ms ahead of" in ahead
    assert skew_problem(ClockSample(4999 * MS, 4 * MS, 1), 5000) is None
    # A measurement too uncertain to place a timestamp inside the venue's 1,000 ms ahead rule.
    vague = skew_problem(ClockSample(0, 2400 * MS, 1), 5000)
    assert vague is not None
    assert "1200 ms" in vague


@pytest.mark.asyncio
async def test_a_measurement_keeps_the_tightest_sample_and_signs_on_venue_time() -> None:
    host = FakeHost(venue_ahead_ms=2500, trips_ms=[80, 6, 40])
    clock = host.clock()
    with pytest.raises(ClockSkewError, match="not been measured"):
        clock.check(5000)
    sample = await clock.measure()
    assert host.requests == 3
    assert sample.round_trip_ns == 6 * MS
    assert sample.offset_ns == 2500 * MS
    assert clock.timestamp_ms() == host.wall_ns // MS + 2500
    clock.check(5000)
    with pytest.raises(ClockSkewError, match="2500 ms behind"):
        clock.check(2000)
    assert clock.counts["measured"] == 1


@pytest.mark.asyncio
async def test_a_resync_measures_again_and_concurrent_ones_share_the_work() -> None:
    host = FakeHost(venue_ahead_ms=100, trips_ms=[6, 6, 6, 6, 6, 6])
    clock = host.clock()
    await clock.measure()
    host.venue_ahead_ms = -700  # the venue's clock stepped back
    first, second = await asyncio.gather(clock.resync(), clock.resync())
    assert first == second
    assert host.requests == 6
    assert clock.offset_ns == -700 * MS
    assert clock.counts["resync"] == 2
    assert clock.counts["measured"] == 2


@pytest.mark.asyncio
async def test_failed_samples_are_counted_and_keep_the_offset() -> None:
    host = FakeHost(venue_ahead_ms=300, trips_ms=[6, 6])
    clock = host.clock(samples=2)
    await clock.measure()

    async def broken() -> bytes:
        return b'{"serverTime": "soon"}'

    clock.fetch = broken
    with pytest.raises(ClockUnavailable, match="serverTime"):
        await clock.measure()
    assert clock.offset_ns == 300 * MS
    assert (clock.counts["unreadable"], clock.counts["measure_failed"]) == (2, 1)

    async def refused() -> bytes:
        raise httpx.ConnectError("refused")

    clock.fetch = refused
    with pytest.raises(ClockUnavailable):
        await clock.measure()
    assert clock.counts["sample_failed"] == 2


@pytest.mark.asyncio
async def test_the_offset_of_a_shifted_simulator_is_measured_and_checked() -> None:
    async with running(clock_skew_ms=7000) as sim, httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{sim.port}"
        clock = VenueClock(rest_time_fetcher(http, base), samples=5)
        sample = await clock.measure()
        # Loopback: the round trip is a few ms, so the offset is 7,000 ms within it.
        assert abs(sample.offset_ms - 7000) <= sample.round_trip_ms / 2 + 2
        with pytest.raises(ClockSkewError) as refused:
            clock.check(5000)
        assert "ms behind the venue's" in str(refused.value)
        assert str(round(sample.offset_ms)) in str(refused.value)
        clock.check(10_000)
        # Requests signed on the venue's time are taken; on the host's, refused -1021.
        codec = BinanceSpotCodec(
            API_KEY, HmacSha256Signer(SECRET), {SYMBOL: Instrument(SYMBOL, "0.01", "0.001")}
        )
        for timestamp_ms, status in (
            (clock.timestamp_ms(), 200),
            (time.time_ns() // MS, 400),
        ):
            request = codec.open_orders(timestamp_ms, SYMBOL)
            answer = await http.get(base + request.target, headers=dict(request.headers))
            assert answer.status_code == status, answer.text
            if status == 400:
                assert answer.json()["code"] == -1021


@pytest.mark.asyncio
async def test_a_time_answer_that_is_not_200_is_unreadable() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503, json={"code": -1008}))
    async with httpx.AsyncClient(transport=transport) as http:
        fetch = rest_time_fetcher(http, "http://venue")
        with pytest.raises(UnreadableAnswer, match="HTTP 503"):
            await fetch()


@pytest.mark.asyncio
async def test_the_offset_is_tracked_until_stopped() -> None:
    host = FakeHost(venue_ahead_ms=100, trips_ms=[4] * 10_000)
    clock = VenueClock(
        host.fetch, samples=2, interval_s=0.01, wall_ns=host.wall, monotonic_ns=host.mono
    )
    task = asyncio.create_task(clock.run())
    try:
        await wait_until(lambda: clock.counts["measured"] >= 2, what="two measurements")
        host.venue_ahead_ms = 900
        await wait_until(lambda: clock.offset_ns == 900 * MS, what="the drift followed")
    finally:
        clock.stop()
        await asyncio.wait_for(task, 5.0)


@pytest.mark.asyncio
async def test_a_wait_for_the_request_budget_is_not_taken_for_network_time() -> None:
    # The venue's clock is 1000 ms ahead; its answer takes 2 ms. Each sample first
    # waits 3 s for a slot in the gateway's budget (a ban, a 429 pause): that wait
    # must not enter the round trip, whose midpoint would then be 1.5 s off.
    now = [0]

    async def slot() -> None:
        now[0] += 3_000_000_000

    async def fetch() -> bytes:
        now[0] += 1_000_000
        server_ms = (now[0] + 1_000_000_000) // 1_000_000
        now[0] += 1_000_000
        return orjson.dumps({"serverTime": server_ms})

    clock = VenueClock(fetch, samples=2, wall_ns=lambda: now[0], monotonic_ns=lambda: now[0])
    clock.slot = slot
    sample = await clock.measure()
    assert sample.round_trip_ms == 2
    assert clock.offset_ms == 1000
