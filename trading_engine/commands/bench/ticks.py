"""The benchmark's publisher process: snapshots, paced ticks, then a burst.

Each tick moves the best ask of ``SYMBOL`` to a price no other tick has
within ``PRICE_CYCLE`` ticks, so an order names the tick that caused it
by its price. The prices (100.00 to 139.99, ``TRIGGER`` above them and
the burst's ask above that) sit inside the exchange simulator's
percent-price band on either dialect: its resting book, which no one
moves during the bench, has its mid at 100.00. It runs as a separate process (``python -m
trading_engine.commands.bench``, see ``__main__``) so that its sending
does not share the engine's interpreter.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson

__all__ = ["OTHER", "PRICE_CYCLE", "SYMBOL", "TRIGGER", "publish"]

SYMBOL = "BTC-USD"
OTHER = "ETH-USD"  # background market data nobody trades
PRICE_CYCLE = 4000  # distinct ask prices: 100.00 .. 139.99
#: The taker's trigger: every tick's ask is at or below it, the burst's above.
TRIGGER = "150.00"
_BID = "99.99"
_BURST_ASK = "160.00"


def _ask(i: int) -> str:
    cents = 10_000 + i % PRICE_CYCLE
    return f"{cents // 100}.{cents % 100:02d}"


def _frame(seq: int, bids: list[list[str]], asks: list[list[str]], symbol: str = SYMBOL) -> bytes:
    message = {"type": "update", "symbol": symbol, "seq": seq, "bids": bids, "asks": asks}
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)


def publish(
    port: int, ticks: int, interval_s: float, burst: int, background_rate: float = 0.0
) -> dict[str, Any]:
    """Send the snapshots, the paced ticks, then the burst; returns the send stamps.

    ``background_rate`` > 0 also sends that many updates per second of a
    second symbol between the ticks (no strategy trades it), as a real feed
    would: the engine's path stays as warm as it is in production.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seq = 1
    for symbol, bid, ask in ((SYMBOL, _BID, _ask(0)), (OTHER, "99.99", "100.01")):
        snapshot = {"type": "snapshot", "symbol": symbol, "seq": 1,
                    "bids": [[bid, "10"]], "asks": [[ask, "1"]]}  # fmt: skip
        sock.sendall(orjson.dumps(snapshot, option=orjson.OPT_APPEND_NEWLINE))
    time.sleep(0.3)
    sent: list[tuple[int, str, int]] = []
    previous = _ask(0)
    other_seq = 1
    gap = 1 / background_rate if background_rate > 0 else None
    for i in range(1, ticks + 1):
        seq += 1
        price = _ask(i)
        frame = _frame(seq, [], [[previous, "0"], [price, "1"]])
        previous = price
        deadline = time.monotonic() + interval_s
        sent.append((seq, price, time.monotonic_ns()))
        sock.sendall(frame)
        while (now := time.monotonic()) < deadline:
            if gap is None:
                time.sleep(deadline - now)  # one wake-up per tick: quiet for the engine
                continue
            # Background updates, paced, never within one gap of the next tick.
            if deadline - now > gap:
                other_seq += 1
                sock.sendall(_frame(other_seq, [["99.99", str(1 + other_seq % 9)]], [], OTHER))
            time.sleep(min(gap, max(0.0, deadline - time.monotonic())))
    burst_first = seq + 2
    if burst:
        seq += 1
        sock.sendall(_frame(seq, [], [[previous, "0"], [_BURST_ASK, "1"]]))
        frames = []
        for i in range(burst):
            seq += 1
            frames.append(_frame(seq, [[_BID, str(1 + i % 9)]], []))
        payload = b"".join(frames)
        view = memoryview(payload)
        for start in range(0, len(payload), 65536):
            sock.sendall(view[start : start + 65536])
    time.sleep(0.2)
    sock.close()
    return {"ticks": sent, "burst_first_seq": burst_first, "last_seq": seq}
