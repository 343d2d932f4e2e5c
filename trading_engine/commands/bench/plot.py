"""The bench's percentile plot (PNG, with the ``plot`` extra's matplotlib)."""

from __future__ import annotations

from typing import Any

from ...core.errors import ConfigError
from .stats import percentile

__all__ = ["plot"]


def plot(report: dict[str, Any], path: str) -> None:
    """A PNG of the percentile curves (needs the ``plot`` extra: matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'trading-engine[plot]'", []
        ) from None
    fractions = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999]
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, samples in report["_samples"].items():
        ordered = sorted(samples)
        if not ordered:
            continue
        values = [percentile(ordered, f) for f in fractions]
        axes.plot(fractions, values, marker="o", label=name)
    axes.set_xscale("logit")
    axes.set_yscale("log")
    axes.set_xlabel("quantile")
    axes.set_ylabel("wire-to-wire tick-to-trade (us)")
    axes.set_title(f"trading-engine bench, Python {report['machine']['python']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
