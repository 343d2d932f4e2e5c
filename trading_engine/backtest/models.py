"""A backtest's models of the venue: queue position and latency. Pure and synchronous.

Queue position (a resting limit order's place in its price level, in lots;
the matching engine keeps it, :mod:`trading_engine.sim.matching`): when
the order rests, the lots ahead of it are the level's size then; a trade
at its price takes the lots ahead first; what a size decrease at the level
does depends on the model:

* :class:`FrontQueue` (``queue_model = "front"``): every decrease is a
  cancel in front of the order (the optimistic estimate);
* :class:`ProbQueue` (``queue_model = "prob"``): a decrease is split
  between the lots ahead and the lots behind by the probability that it
  came from behind, ``f(back) / (f(back) + f(front))`` with
  ``f(x) = x ** n`` (``queue_power``): the power-law variant of
  hftbacktest's probabilistic queue model (``PowerProbQueueFunc``, after
  Rigtorp's estimate of order queue position).

In both, the lots traded at the level since its last size change are taken
out of the next decrease first (the book update that follows a trade shows
the same lots leaving again), and an increase joins behind the order.

Latency (nanoseconds): :class:`ConstantLatency`, or :class:`SampledLatency`
drawing from recorded samples with a seeded generator, so the same seed
gives the same run.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

from ..sim.matching import QueueModel, QueuePosition

__all__ = [
    "ConstantLatency",
    "FrontQueue",
    "Latency",
    "LatencyError",
    "ProbQueue",
    "SampledLatency",
    "load_latency_samples",
    "queue_model",
]


class FrontQueue:
    """Every size decrease at the level is a cancel in front of the order."""

    def __init__(self) -> None:
        self.name = "front"

    def depth(self, position: QueuePosition, before: int, after: int) -> int:
        """The lots ahead after the level went from ``before`` to ``after`` lots."""
        change = before - after - position.traded
        position.traded = 0
        ahead = position.ahead
        if change > 0:
            ahead -= change
        return max(0, min(ahead, after))


class ProbQueue:
    """A decrease is split ahead/behind by ``f(back) / (f(back) + f(front))``, ``f(x) = x**n``.

    The estimate of the lots ahead, with ``chg`` the decrease no trade
    explains and ``p`` that probability, is
    ``front - (1 - p) * chg + min(back - p * chg, 0)``, rounded up to a
    whole lot (never nearer the front than the estimate), within
    ``[0, after]``. ``n`` must be positive (``ValueError``).
    """

    def __init__(self, power: float) -> None:
        if not power > 0 or not math.isfinite(power):
            raise ValueError(f"queue_power must be a positive number, got {power!r}")
        self.power = power
        self.name = f"prob(n={power:g})"

    def depth(self, position: QueuePosition, before: int, after: int) -> int:
        """The lots ahead after the level went from ``before`` to ``after`` lots."""
        change = before - after - position.traded
        position.traded = 0
        front = position.ahead
        if change <= 0:
            return max(0, min(front, after))
        back = max(0, before - front)
        n = self.power
        f_back = float(back) ** n
        f_front = float(front) ** n
        total = f_back + f_front
        p = 1.0 if total == 0.0 or math.isinf(total) else f_back / total
        estimate = front - (1.0 - p) * change + min(back - p * change, 0.0)
        return max(0, min(math.ceil(round(estimate, 9)), after))


def queue_model(name: str, power: float) -> QueueModel | None:
    """The model ``[backtest] queue_model`` names (``none``: the replay's touch rule).

    Raises ``ValueError`` naming the key for another name.
    """
    if name == "front":
        return FrontQueue()
    if name == "prob":
        return ProbQueue(power)
    if name == "none":
        return None
    raise ValueError(f"backtest.queue_model: {name!r} is not one of front, prob, none")


class Latency(Protocol):
    """A one-way delay: each call returns the next one, in ns (``>= 0``)."""

    description: str

    def __call__(self) -> int: ...


class ConstantLatency:
    """The same delay every time."""

    def __init__(self, ns: int) -> None:
        if ns < 0:
            raise ValueError(f"a latency is never negative, got {ns} ns")
        self.ns = ns
        self.description = f"constant {ns / 1000:g} us"

    def __call__(self) -> int:
        return self.ns


class SampledLatency:
    """Delays drawn uniformly from ``samples`` (ns) by a generator seeded with ``seed``.

    Raises ``ValueError`` without samples or with a negative one.
    """

    def __init__(self, samples: Sequence[int], seed: int, source: str = "samples") -> None:
        if not samples:
            raise ValueError(f"{source}: no latency samples")
        if min(samples) < 0:
            raise ValueError(f"{source}: a latency is never negative")
        self.samples = list(samples)
        self._random = random.Random(seed)
        self.description = f"sampled from {source} ({len(self.samples)} values)"

    def __call__(self) -> int:
        samples = self.samples
        return samples[self._random.randrange(len(samples))]


class LatencyError(ValueError):
    """A latency file that cannot be read; the message names the file and line."""


_BUCKET = re.compile(rb'^[A-Za-z_:][A-Za-z0-9_:]*_bucket\{(?:[^}]*,)?le="([^"]+)"[^}]*\}\s+(\S+)')
#: Points drawn per histogram bucket (spread evenly inside it).
_POINTS_PER_BUCKET_MAX: Final = 1000


def load_latency_samples(path: str | Path) -> list[int]:
    """Latency samples in ns from ``path``.

    Two forms, told apart by content: one number of microseconds per line
    (``#`` comments and blank lines ignored); or a Prometheus text
    exposition of one histogram (the ``*_bucket{le="SECONDS"} COUNT``
    lines, cumulative, as the engine's ``/metrics`` serves them), turned
    into samples spread evenly inside each bucket in proportion to its
    count (the ``+Inf`` bucket's extra counts are given the last finite
    bound). Raises :class:`LatencyError` naming the file and line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LatencyError(f"{path}: cannot read latency samples: {exc.strerror}") from exc
    lines = data.splitlines()
    if any(b"_bucket{" in line for line in lines):
        return _histogram_samples(path, lines)
    samples: list[int] = []
    for number, line in enumerate(lines, start=1):
        text = line.split(b"#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise LatencyError(f"{path}:{number}: not a number of microseconds") from None
        if not math.isfinite(value) or value < 0:
            raise LatencyError(f"{path}:{number}: a latency is a finite number >= 0")
        samples.append(round(value * 1000))
    if not samples:
        raise LatencyError(f"{path}: no latency samples")
    return samples


def _histogram_samples(path: Path, lines: list[bytes]) -> list[int]:
    buckets: list[tuple[float, float]] = []
    for number, line in enumerate(lines, start=1):
        match = _BUCKET.match(line.strip())
        if match is None:
            continue
        try:
            bound = float(match.group(1))
            count = float(match.group(2))
        except ValueError:
            raise LatencyError(f"{path}:{number}: not a histogram bucket") from None
        buckets.append((bound, count))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        raise LatencyError(f"{path}: the histogram has no observations")
    scale = min(1.0, _POINTS_PER_BUCKET_MAX * len(buckets) / total)
    samples: list[int] = []
    lower = 0.0
    previous = 0.0
    for bound, cumulative in buckets:
        count = cumulative - previous
        previous = cumulative
        upper = lower if math.isinf(bound) else bound
        points = round(count * scale)
        for i in range(points):
            seconds = lower + (upper - lower) * (i + 0.5) / points
            samples.append(round(seconds * 1e9))
        if not math.isinf(bound):
            lower = bound
    if not samples:
        raise LatencyError(f"{path}: the histogram has no observations")
    return samples
