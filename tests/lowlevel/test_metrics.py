"""Latency histograms and the stepped /metrics renderer."""

from __future__ import annotations

import asyncio
import sys
from bisect import bisect_left
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from trading_engine.lowlevel.histogram import LATENCY_BUCKETS_S
from trading_engine.lowlevel.metrics import (
    ExpositionRenderer,
    LatencyHistogram,
    SampledHistogram,
    SteppedRegistry,
    add_histogram,
    histogram_family,
    register_process_collectors,
)

_BOUNDS_NS = [round(bound * 1e9) for bound in LATENCY_BUCKETS_S]


@given(st.lists(st.one_of(st.sampled_from(_BOUNDS_NS), st.integers(0, 2 * 10**10)), max_size=40))
def test_an_observation_lands_in_the_first_bucket_whose_bound_is_not_below_it(
    values: list[int],
) -> None:
    # Prometheus's ``le``: a value equal to a bound counts in that bound's bucket.
    histogram = LatencyHistogram()
    expected = [0] * (len(_BOUNDS_NS) + 1)
    for value in values:
        histogram.observe_ns(value)
        expected[bisect_left(_BOUNDS_NS, value)] += 1
    assert histogram.counts == expected
    assert histogram.count == len(values)
    assert histogram.sum_ns == sum(values)


def test_sampled_histogram_gives_measured_percentiles() -> None:
    histogram = SampledHistogram(keep=1000)
    assert histogram.percentile_s(0.5) is None
    for value_us in range(1, 101):  # 1..100 us
        histogram.observe_ns(value_us * 1000)
    assert histogram.percentile_s(0.5) == 50e-6
    assert histogram.percentile_s(0.99) == 99e-6
    assert histogram.percentile_s(1.0) == 100e-6
    assert histogram.count == 100  # still a histogram for /metrics
    histogram.observe_ns(10**12)  # past the last bucket
    assert histogram.quantile_s(1.0) == float("inf")  # a bound
    assert histogram.percentile_s(1.0) == 1000.0  # a measurement


class _Steps:
    """A stepped collector: a large family, a histogram and pause points between."""

    def __init__(self, symbols: int) -> None:
        self.symbols = symbols

    def steps(self) -> Iterator[Metric | None]:
        gauge = GaugeMetricFamily("big", 'Per "symbol"\\ gauge.\nTwo lines.', labels=["symbol"])
        for index in range(self.symbols):
            gauge.add_metric([f'S{index}"\\\n'], index / 3)
            if index % 10 == 0:
                yield None
        yield gauge
        yield CounterMetricFamily("events", "Events.", value=7)
        histogram = LatencyHistogram()
        histogram.observe_ns(1500)
        family = histogram_family("latency_seconds", "A latency.", ["stage"])
        add_histogram(family, histogram, ["risk"])
        yield family

    def collect(self) -> Iterator[Metric]:
        return (family for family in self.steps() if family is not None)


def test_stepped_render_is_byte_for_byte_generate_latest() -> None:
    registry = SteppedRegistry()
    registry.register(_Steps(1000))
    plain = CollectorRegistry(auto_describe=False)
    plain.register(_Steps(1000))
    renderer = ExpositionRenderer(registry, step_s=0.0)
    body = asyncio.run(renderer.render())
    assert body == generate_latest(plain) == generate_latest(registry)
    # With no time allowed per step, every piece and pause point is a step.
    assert renderer.steps.count > 1000 // 32
    # A registry of plain collectors renders the same way.
    assert asyncio.run(ExpositionRenderer(plain).render()) == body


def test_stepped_render_gives_the_loop_back_between_steps() -> None:
    registry = SteppedRegistry()
    registry.register(_Steps(3000))

    async def main() -> tuple[int, int]:
        turns = 0
        done = False

        async def count_turns() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count_turns())
        renderer = ExpositionRenderer(registry, step_s=0.0)
        await renderer.render()
        done = True
        await counter
        return turns, renderer.steps.count

    turns, steps = asyncio.run(main())
    assert turns >= steps - 1 > 100


def test_process_gc_and_platform_collectors_register() -> None:
    registry = SteppedRegistry()
    register_process_collectors(registry)
    text = asyncio.run(ExpositionRenderer(registry).render()).decode()
    assert "python_gc_collections_total" in text
    assert "python_info{" in text
    if sys.platform.startswith("linux"):
        assert "process_cpu_seconds_total" in text
        assert "process_resident_memory_bytes" in text
