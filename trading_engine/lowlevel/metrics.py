"""Hot-path metrics: plain counters and histograms, exported by a Collector.

Observing into a ``prometheus_client.Histogram`` costs about 1.2-1.6 us
on this engine's reference machine; a ``bisect`` into a list of counts
costs about 0.15 us. So hot paths record into :class:`LatencyHistogram`
(plain ints) and the Prometheus exposition is rendered from them when
scraped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from .histogram import LATENCY_BUCKETS_S, LatencyHistogram, SampledHistogram

__all__ = [
    "LATENCY_BUCKETS_S",
    "ExpositionRenderer",
    "LatencyHistogram",
    "SampledHistogram",
    "SteppedCollector",
    "SteppedRegistry",
    "add_histogram",
    "counter_family",
    "histogram_family",
    "register_process_collectors",
]


def counter_family(
    name: str,
    documentation: str,
    fixed: Mapping[str, str],
    label: str,
    counts: Mapping[str, float],
) -> CounterMetricFamily:
    """A counter family with one sample per ``counts`` entry, its key under ``label``.

    ``fixed`` gives the labels every sample carries (``{"venue": "binance"}``),
    before ``label``.
    """
    family = CounterMetricFamily(name, documentation, labels=[*fixed, label])
    values = list(fixed.values())
    for key, value in counts.items():
        family.add_metric([*values, key], value)
    return family


def histogram_family(
    name: str, documentation: str, labels: Sequence[str] = ()
) -> HistogramMetricFamily:
    """An empty histogram family to fill with :func:`add_histogram`."""
    return HistogramMetricFamily(name, documentation, labels=list(labels))


def add_histogram(
    family: HistogramMetricFamily, histogram: LatencyHistogram, labels: Sequence[str] = ()
) -> None:
    """Add one LatencyHistogram to a family as cumulative buckets in seconds."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(histogram.bounds_s, histogram.counts, strict=False):
        running += count
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", histogram.count))
    family.add_metric(list(labels), buckets, histogram.sum_ns / 1e9)


@runtime_checkable
class SteppedCollector(Protocol):
    """A collector that can be rendered a piece at a time.

    ``steps()`` yields the same families as ``collect()``, with ``None``
    between them wherever the renderer may give the event loop back: inside
    work that grows with the number of symbols, every few dozen of them.
    Each stretch between two yields must stay well under a millisecond.
    """

    def steps(self) -> Iterator[Metric | None]:
        """The families of ``collect()``, with ``None`` at the pause points."""


class SteppedRegistry(CollectorRegistry):
    """A :class:`CollectorRegistry` that the :class:`ExpositionRenderer` renders in steps.

    ``collect()`` (and so ``generate_latest``) works as on any registry;
    :meth:`steps` also yields the pause points of :class:`SteppedCollector`
    members, and one after each other collector.
    """

    def __init__(self, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self._ordered: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._ordered.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._ordered.remove(collector)

    def steps(self) -> Iterator[Metric | None]:
        """Every collector's families in registration order, with pause points."""
        for collector in list(self._ordered):
            if isinstance(collector, SteppedCollector):
                yield from collector.steps()
            else:
                yield from collector.collect()
            yield None


def register_process_collectors(registry: CollectorRegistry) -> None:
    """Register prometheus_client's process, GC and platform collectors on ``registry``.

    ``process_*``: CPU seconds, resident and virtual memory, open and
    maximum file descriptors, start time (read from /proc; nothing where
    there is none). ``python_gc_*``: collections, collected and
    uncollectable objects per generation. ``python_info``: the
    interpreter's version and implementation.
    """
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)


class _Families:
    """The smallest ``Collector`` ``generate_latest`` accepts: given families."""

    __slots__ = ("families",)

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


#: Samples rendered in one piece: about 0.1 ms of formatting.
_SLICE: Final = 32
#: A sample of a family that the text format moves into a family of its own.
_OPENMETRICS_SUFFIXES: Final = ("_created", "_gsum", "_gcount")


def _pieces(family: Metric) -> Iterator[bytes]:
    """``generate_latest``'s text for one family, in slices of :data:`_SLICE` samples."""
    samples = family.samples
    splittable = len(samples) > _SLICE and not any(
        sample.name.endswith(_OPENMETRICS_SUFFIXES) for sample in samples
    )
    if not splittable:
        yield generate_latest(_Families([family]))
        return
    for start in range(0, len(samples), _SLICE):
        part = Metric(family.name, family.documentation, family.type, family.unit)
        part.samples = samples[start : start + _SLICE]
        text = generate_latest(_Families([part]))
        if start:
            # The HELP and TYPE lines belong once, before the first slice.
            text = text.split(b"\n", 2)[2]
        yield text


class ExpositionRenderer:
    """Renders a registry's text exposition on the event loop, a step at a time.

    ``generate_latest`` builds every family and formats every sample in one
    call: with thousands of series that holds the loop for a second, and a
    thread does not help (it holds the GIL for the interpreter's switch
    interval, 5 ms, at a time). :meth:`render` instead works until
    ``step_s`` has passed, then lets the loop run everything ready before
    going on, so no step holds the loop much longer than ``step_s`` plus
    one piece of work (a family of a few dozen samples, or a slice of
    :data:`_SLICE` samples being formatted).

    The text is byte for byte what ``generate_latest`` gives for the same
    values. Families are read at different loop turns, so the exposition
    is not one instant's: each family is consistent in itself, which is
    all Prometheus asks.

    ``steps`` is a histogram of the loop time of each step, in seconds;
    ``longest_step_ns`` and ``longest_step_cpu_ns`` are the longest step
    of the last render, in wall time and in this thread's CPU time (the
    latter leaves out time the machine gave to other processes).
    """

    def __init__(self, registry: CollectorRegistry, step_s: float = 0.0001) -> None:
        self.registry = registry
        self.step_ns = round(step_s * 1e9)
        self.steps = LatencyHistogram()
        self.renders = 0
        self.longest_step_ns = 0
        self.longest_step_cpu_ns = 0
        self._started = 0
        self._started_cpu = 0

    async def render(self) -> bytes:
        """The text exposition (format 0.0.4) as UTF-8 bytes."""
        registry = self.registry
        if isinstance(registry, SteppedRegistry):
            steps: Iterator[Metric | None] = registry.steps()
        else:
            steps = iter(registry.collect())
        out: list[bytes] = []
        self.longest_step_ns = self.longest_step_cpu_ns = 0
        self._start()
        for family in steps:
            if family is not None:
                for piece in _pieces(family):
                    out.append(piece)
                    if time.perf_counter_ns() - self._started > self.step_ns:
                        await self._pause()
            if time.perf_counter_ns() - self._started > self.step_ns:
                await self._pause()
        self._end_step()
        self.renders += 1
        return b"".join(out)

    def _start(self) -> None:
        self._started = time.perf_counter_ns()
        self._started_cpu = time.thread_time_ns()

    def _end_step(self) -> None:
        took = time.perf_counter_ns() - self._started
        self.steps.observe_ns(took)
        self.longest_step_ns = max(self.longest_step_ns, took)
        took_cpu = time.thread_time_ns() - self._started_cpu
        self.longest_step_cpu_ns = max(self.longest_step_cpu_ns, took_cpu)

    async def _pause(self) -> None:
        """End a step: let the loop run what is ready, then start the next."""
        self._end_step()
        await asyncio.sleep(0)
        self._start()
