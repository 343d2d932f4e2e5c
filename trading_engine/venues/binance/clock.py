"""The venue's clock: the offset of Binance's clock from the host's, measured and tracked.

Every signed Binance request carries ``timestamp``, the venue's time in
milliseconds, and the venue refuses it (``-1021``) when it is 1,000 ms or
more ahead of its own clock or older than the request's ``recvWindow``.
The host's clock is not the venue's, so the engine measures the offset:

* one **sample** is one ``GET /api/v3/time``: the request leaves at local
  wall time ``t0``, the answer carrying ``serverTime`` arrives at ``t1``;
  the venue read its clock somewhere in between, taken as the midpoint,
  so ``offset = serverTime - (t0 + t1) / 2``, with an error of at most half
  the round trip (plus the venue's millisecond rounding);
* one **measurement** takes ``samples`` of them one after the other and
  keeps the one with the smallest round trip (the tightest bound; a sample
  delayed one way by a queue or a retransmission is the one thrown away);
* the offset is **tracked**: :meth:`VenueClock.run` measures again every
  ``interval_s``, since both clocks drift, and a ``-1021`` answer asks for
  :meth:`VenueClock.resync` at once.

The round trip is timed on the monotonic clock and the midpoint placed on
the wall clock at the answer's arrival, so a wall-clock step during a
sample cannot turn into a negative or enormous round trip.

The arithmetic (:func:`sample_from`, :func:`best_sample`, :func:`skew_problem`)
is pure; :class:`VenueClock` adds the awaits around an injected transport
(an async callable returning the body of ``GET /api/v3/time``) and
injected clocks, so tests run it on fake time. In the engine the transport
is the order gateway's (:meth:`~trading_engine.io.gateway.HttpGateway.venue_time`):
the time requests take their slots in the venue's request budget and wait
out its pauses and bans like every other request, and the one clock signs
the REST requests and the user data stream's subscription alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Final, NamedTuple

import httpx
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...core.errors import EngineError, UnreadableAnswer
from ...lowlevel.metrics import counter_family
from ...lowlevel.tasks import wait_or_stop
from .orders import parse_server_time

__all__ = [
    "AHEAD_LIMIT_MS",
    "CLOCK_EVENTS",
    "ClockSample",
    "ClockSkewError",
    "ClockUnavailable",
    "VenueClock",
    "VenueClockCollector",
    "best_sample",
    "rest_time_fetcher",
    "sample_from",
    "skew_problem",
]

log = logging.getLogger("trading_engine.venues.binance.clock")

#: Binance refuses a timestamp this far ahead of its clock or more, whatever the window.
AHEAD_LIMIT_MS: Final = 1000
#: The counters :class:`VenueClock` keeps (``trading_engine_venue_clock_events_total{event}``).
CLOCK_EVENTS: Final = ("measured", "sample_failed", "unreadable", "measure_failed", "resync")
_NS_PER_MS: Final = 1_000_000


class ClockSkewError(EngineError):
    """The host's clock is too far from the venue's to sign requests (the message says how far)."""


class ClockUnavailable(EngineError):
    """No sample of the venue's clock could be taken (every request failed or was unreadable)."""


class ClockSample(NamedTuple):
    """One reading of the venue's clock.

    ``offset_ns``: the venue's time minus the host's wall time (positive: the
    host is behind); ``round_trip_ns``: the request's round trip, which bounds
    the offset's error at half of it; ``server_ms``: the ``serverTime`` read.
    """

    offset_ns: int
    round_trip_ns: int
    server_ms: int

    @property
    def offset_ms(self) -> float:
        """The offset in milliseconds."""
        return self.offset_ns / _NS_PER_MS

    @property
    def round_trip_ms(self) -> float:
        """The round trip in milliseconds."""
        return self.round_trip_ns / _NS_PER_MS


def sample_from(
    sent_mono_ns: int, received_mono_ns: int, received_wall_ns: int, server_ms: int
) -> ClockSample:
    """The sample of one ``GET /api/v3/time``: offset to the round trip's midpoint.

    ``sent_mono_ns``/``received_mono_ns`` are monotonic readings around the
    request, ``received_wall_ns`` the wall clock at the answer, ``server_ms``
    its ``serverTime``. Raises ``ValueError`` for a negative round trip.
    """
    round_trip = received_mono_ns - sent_mono_ns
    if round_trip < 0:
        raise ValueError(f"a round trip of {round_trip} ns")
    midpoint_wall_ns = received_wall_ns - round_trip // 2
    return ClockSample(server_ms * _NS_PER_MS - midpoint_wall_ns, round_trip, server_ms)


def best_sample(samples: Iterable[ClockSample]) -> ClockSample:
    """The sample with the smallest round trip (the first of equals). ``ValueError`` if none."""
    best: ClockSample | None = None
    for sample in samples:
        if best is None or sample.round_trip_ns < best.round_trip_ns:
            best = sample
    if best is None:
        raise ValueError("no clock sample")
    return best


def skew_problem(sample: ClockSample, recv_window_ms: int) -> str | None:
    """Why requests signed on the host's clock cannot be trusted to the venue, or None.

    Two rules: the host's own clock must be within ``recv_window_ms`` of the
    venue's (a host that far off has a broken time service, and a drift
    between two measurements could carry requests out of the window), and
    half the round trip, the measurement's error, must stay under the
    smaller of the window and the 1,000 ms the venue allows ahead (a
    timestamp that uncertain may land on either side).
    """
    offset_ms = sample.offset_ns / _NS_PER_MS
    half_trip_ms = sample.round_trip_ns / 2 / _NS_PER_MS
    if abs(offset_ms) > recv_window_ms:
        where = "behind" if offset_ms > 0 else "ahead of"
        return (
            f"binance clock: the host's clock is {abs(offset_ms):.0f} ms {where} the venue's "
            f"(best of the samples: a {sample.round_trip_ms:.1f} ms round trip), beyond the "
            f"{recv_window_ms} ms receive window: set the host's time (NTP)"
        )
    limit_ms = min(recv_window_ms, AHEAD_LIMIT_MS)
    if half_trip_ms >= limit_ms:
        return (
            f"binance clock: the venue's time is known only within {half_trip_ms:.0f} ms "
            f"(a {sample.round_trip_ms:.0f} ms round trip at best), not within {limit_ms} ms "
            f"(offset {offset_ms:+.0f} ms)"
        )
    return None


TimeFetcher = Callable[[], Awaitable[bytes]]


def rest_time_fetcher(http: httpx.AsyncClient, rest_url: str) -> TimeFetcher:
    """A transport for :class:`VenueClock`: ``GET {rest_url}/api/v3/time`` on ``http``.

    The callable returns the body of a 200 answer and raises
    :class:`UnreadableAnswer` for another status (a 429 or a 5xx says
    nothing of the venue's clock); ``httpx.HTTPError`` passes through.
    """
    url = rest_url.rstrip("/") + "/api/v3/time"

    async def fetch() -> bytes:
        answer = await http.get(url)
        if answer.status_code != 200:
            raise UnreadableAnswer(f"binance time: HTTP {answer.status_code}")
        return answer.content

    return fetch


class VenueClock:
    """The venue's clock as the host sees it: an offset, measured, tracked and checked.

    ``fetch`` performs ``GET /api/v3/time`` and returns its body
    (:func:`rest_time_fetcher`); it may raise ``OSError``,
    ``httpx.HTTPError``, ``TimeoutError`` or :class:`UnreadableAnswer`, each
    counted as a failed sample; None leaves :attr:`fetch` to be set before
    the first measurement (the gateway sets its own). ``samples`` (>= 1) requests make one
    measurement, the one with the smallest round trip kept; ``interval_s``
    is the tracking period of :meth:`run`; ``timeout_s`` bounds each
    request. ``wall_ns`` and ``monotonic_ns`` are the host's clocks
    (injected: tests pass fakes). Raises ``ValueError`` for ``samples < 1``
    or a period or timeout <= 0.

    Counters (:attr:`counts`, by :data:`CLOCK_EVENTS`): ``measured``,
    ``sample_failed``, ``unreadable`` (a body that is not a time),
    ``measure_failed`` (no sample at all), ``resync``.
    """

    def __init__(
        self,
        fetch: TimeFetcher | None,
        *,
        samples: int = 5,
        interval_s: float = 60.0,
        timeout_s: float = 5.0,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        #: The transport of ``GET /api/v3/time`` (None: not set yet).
        self.fetch = fetch
        #: Awaited before a sample's timing starts (the request's slot in a budget).
        self.slot: Callable[[], Awaitable[None]] | None = None
        self.samples = samples
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        #: The venue's time minus the host's, in ns (0 until measured).
        self.offset_ns = 0
        #: The sample the offset comes from; None until the first measurement.
        self.last: ClockSample | None = None
        self.counts: dict[str, int] = dict.fromkeys(CLOCK_EVENTS, 0)
        self._measuring: asyncio.Task[ClockSample] | None = None
        self._stop = asyncio.Event()

    def __repr__(self) -> str:
        return f"VenueClock(offset={self.offset_ns / _NS_PER_MS:+.1f} ms)"

    @property
    def measured(self) -> bool:
        """Whether at least one measurement succeeded."""
        return self.last is not None

    @property
    def offset_ms(self) -> int | None:
        """The offset in whole milliseconds (rounded), or None before the first measurement."""
        return None if self.last is None else round(self.offset_ns / _NS_PER_MS)

    def timestamp_ms(self) -> int:
        """The venue's time now, in ms, for a signed request: host wall time + offset. O(1)."""
        return (self._wall_ns() + self.offset_ns) // _NS_PER_MS

    def check(self, recv_window_ms: int) -> None:
        """Refuse to sign on this clock: raises :class:`ClockSkewError` with the measured offset.

        Raised before any measurement too, and when :func:`skew_problem`
        finds the host's clock further from the venue's than
        ``recv_window_ms`` or the measurement too uncertain for it.
        """
        problem = self.problem(recv_window_ms)
        if problem is not None:
            raise ClockSkewError(problem)

    def problem(self, recv_window_ms: int) -> str | None:
        """Why this clock cannot sign for ``recv_window_ms``, or None (as :meth:`check`)."""
        if self.last is None:
            return "binance clock: the venue's clock has not been measured"
        return skew_problem(self.last, recv_window_ms)

    async def measure(self) -> ClockSample:
        """Take ``samples`` readings and keep the best; the offset changes only on success.

        Concurrent calls share one measurement. Raises
        :class:`ClockUnavailable` when every reading failed (the offset is
        left as it was).
        """
        task = self._measuring
        if task is None or task.done():
            task = self._measuring = asyncio.get_running_loop().create_task(self._measure())
        return await asyncio.shield(task)

    async def resync(self) -> ClockSample:
        """Measure again now, for a ``-1021`` answer (counted ``resync``); as :meth:`measure`."""
        self.counts["resync"] += 1
        return await self.measure()

    async def _measure(self) -> ClockSample:
        taken: list[ClockSample] = []
        failure = ""
        for _ in range(self.samples):
            try:
                taken.append(await self._sample())
            except UnreadableAnswer as exc:
                self.counts["unreadable"] += 1
                failure = str(exc)
            except (OSError, httpx.HTTPError, TimeoutError) as exc:
                self.counts["sample_failed"] += 1
                failure = f"{type(exc).__name__}: {exc}"
        if not taken:
            self.counts["measure_failed"] += 1
            raise ClockUnavailable(f"binance clock: no sample of the venue's time ({failure})")
        best = best_sample(taken)
        self.offset_ns = best.offset_ns
        self.last = best
        self.counts["measured"] += 1
        return best

    async def _sample(self) -> ClockSample:
        fetch = self.fetch
        if fetch is None:
            raise OSError("no transport for the venue's time")
        slot = self.slot
        if slot is not None:
            # A wait for the budget (bounded as the request is) is not network time.
            async with asyncio.timeout(self.timeout_s):
                await slot()
        sent = self._monotonic_ns()
        async with asyncio.timeout(self.timeout_s):
            body = await fetch()
        received = self._monotonic_ns()
        wall = self._wall_ns()
        return sample_from(sent, received, wall, parse_server_time(body))

    async def run(self) -> None:
        """Measure every ``interval_s`` until :meth:`stop`; a failed measurement keeps the offset.

        A failure is counted and logged, and the next try comes one period
        later: the offset last measured stays in use meanwhile.
        """
        while not await wait_or_stop(self._stop, self.interval_s):
            try:
                await self.measure()
            except ClockUnavailable as exc:
                log.warning("%s; keeping the offset of %+.1f ms", exc, self.offset_ns / 1e6)

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()


class VenueClockCollector(Collector):
    """A :class:`VenueClock`'s counters and offset, read when scraped.

    ``trading_engine_venue_clock_events_total{venue,event}``,
    ``trading_engine_venue_clock_offset_seconds{venue}`` (venue minus host)
    and ``trading_engine_venue_clock_round_trip_seconds{venue}`` (of the
    sample the offset comes from).
    """

    def __init__(self, clock: VenueClock, venue: str = "binance") -> None:
        self.clock = clock
        self.venue = venue

    def collect(self) -> Iterator[Metric]:
        clock, venue = self.clock, self.venue
        yield counter_family(
            "trading_engine_venue_clock_events",
            "Venue clock measurements, failed samples and re-syncs, by event.",
            {"venue": venue},
            "event",
            clock.counts,
        )
        offset = GaugeMetricFamily(
            "trading_engine_venue_clock_offset_seconds",
            "The venue's clock minus the host's, as last measured (positive: the host is behind).",
            labels=["venue"],
        )
        offset.add_metric([venue], clock.offset_ns / 1e9)
        yield offset
        trip = GaugeMetricFamily(
            "trading_engine_venue_clock_round_trip_seconds",
            "Round trip of the sample the offset comes from (the offset's error is half of it).",
            labels=["venue"],
        )
        trip.add_metric([venue], clock.last.round_trip_ns / 1e9 if clock.last else 0.0)
        yield trip
