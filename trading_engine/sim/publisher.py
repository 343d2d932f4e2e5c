"""A market-data publisher: the client side of the feed protocol.

Used by the tests, the benchmarks, the exchange simulator and ``replay``:

* :func:`random_walk_stream` yields frames for N symbols from seeded
  :class:`~trading_engine.marketsim.RandomWalkBook` walks (a snapshot of
  each first, then updates and trades round-robin);
* :class:`Publisher` writes frames to a feed port, as fast as possible or
  at a set rate, honouring TCP flow control (it awaits ``drain``);
* :func:`capture_frames` reads the frames of a capture file back.

Run as a program it blasts a random walk at a feed port:
``python -m trading_engine.publisher --port 7001 --symbols 4 --count 100000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..core.instruments import Instrument
from ..io.capture import read_capture
from .marketsim import RandomWalkBook

__all__ = ["Publisher", "capture_frames", "random_walk_stream", "symbols_for"]


def symbols_for(count: int, tick_size: str = "0.01", lot_size: str = "0.001") -> list[Instrument]:
    """``count`` instruments named SYM000, SYM001, ... on one grid."""
    return [Instrument(f"SYM{i:03d}", tick_size, lot_size) for i in range(count)]


def random_walk_stream(
    instruments: Sequence[Instrument],
    *,
    seed: int = 0,
    trade_probability: float = 0.05,
    snapshot_every: int = 0,
    levels: int = 20,
) -> Iterator[bytes]:
    """Endless frames (with newlines): snapshots first, then round-robin updates.

    ``snapshot_every`` > 0 re-sends each symbol's snapshot after that many
    of its messages. Deterministic for a given seed.
    """
    walks = [
        RandomWalkBook(
            inst, seed=seed * 1_000_003 + i, levels=levels, trade_probability=trade_probability
        )
        for i, inst in enumerate(instruments)
    ]
    for walk in walks:
        yield walk.snapshot_frame()
    counts = [0] * len(walks)
    while True:
        for i, walk in enumerate(walks):
            counts[i] += 1
            if snapshot_every and counts[i] % snapshot_every == 0:
                yield walk.snapshot_frame()
            else:
                yield walk.next_frame()


def capture_frames(path: str | Path) -> Iterator[bytes]:
    """The frames of a capture file (with newlines), in order."""
    for _, frame in read_capture(path):
        yield frame + b"\n"


class Publisher:
    """One TCP connection to a feed port."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sent = 0
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        _, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> Publisher:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, data: bytes) -> None:
        """Write raw bytes (one or many frames, or a part of one) and drain."""
        if self._writer is None:
            raise RuntimeError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def publish(
        self,
        frames: Iterable[bytes],
        *,
        count: int | None = None,
        rate: float | None = None,
        duration_s: float | None = None,
        batch: int = 64,
    ) -> int:
        """Send frames until ``count`` or ``duration_s`` or the iterable ends.

        ``rate`` is frames per second (None: as fast as flow control allows).
        Returns the number of frames sent.
        """
        if self._writer is None:
            raise RuntimeError("not connected")
        if count is None and duration_s is None:
            raise ValueError("give count or duration_s: a publisher always stops by itself")
        writer = self._writer
        start = time.monotonic()
        deadline = None if duration_s is None else start + duration_s
        sent = 0
        pending: list[bytes] = []
        iterator = iter(frames)
        while count is None or sent < count:
            want = batch if count is None else min(batch, count - sent)
            if rate is not None:
                due = int((time.monotonic() - start) * rate) + 1 - sent
                if due <= 0:
                    await asyncio.sleep(min(0.001, 1 / rate))
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    continue
                want = min(want, due)
            pending.clear()
            for frame in iterator:
                pending.append(frame)
                if len(pending) >= want:
                    break
            if not pending:
                break
            writer.write(b"".join(pending))
            sent += len(pending)
            await writer.drain()
            if deadline is not None and time.monotonic() >= deadline:
                break
        self.sent += sent
        return sent


async def _blast(args: argparse.Namespace) -> None:
    instruments = symbols_for(args.symbols)
    frames: Iterable[bytes] = random_walk_stream(instruments, seed=args.seed)
    if args.pregenerate:
        # Build every frame before connecting, so the publisher is not the
        # bottleneck of a throughput measurement.
        frames = list(itertools.islice(frames, args.count))
    async with Publisher(args.host, args.port) as publisher:
        started = time.perf_counter()
        sent = await publisher.publish(
            frames, count=args.count, rate=args.rate, duration_s=args.duration
        )
        elapsed = time.perf_counter() - started
    print(f"sent {sent} frames in {elapsed:.3f} s ({sent / elapsed:,.0f}/s)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish a seeded random walk to a feed port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--symbols", type=int, default=1)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pregenerate", action="store_true", help="build all --count frames before sending"
    )
    args = parser.parse_args(argv)
    if args.count is None and args.duration is None:
        parser.error("give --count or --duration")
    if args.pregenerate and args.count is None:
        parser.error("--pregenerate needs --count")
    asyncio.run(_blast(args))


if __name__ == "__main__":
    main()
