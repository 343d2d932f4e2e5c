"""Latency histograms."""

from __future__ import annotations

from trading_engine.lowlevel.metrics import SampledHistogram


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
