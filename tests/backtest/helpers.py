"""Engine-capture lines and configurations for backtest tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.fakes import config
from trading_engine.config import Config

T0 = 1_600_000_000_000_000_000
MS = 1_000_000


def book(kind: str, seq: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return orjson.dumps({"type": kind, "symbol": "BTC-USD", "seq": seq, "bids": bids, "asks": asks})


def trade(seq: int, price: str, size: str, side: str) -> bytes:
    return orjson.dumps(
        {"type": "trade", "symbol": "BTC-USD", "seq": seq, "price": price, "size": size,
         "side": side}
    )  # fmt: skip


def write_capture(path: Path, frames: list[tuple[int, bytes]]) -> Path:
    path.write_bytes(b"".join(b"%d\t%s\n" % (ts, frame) for ts, frame in frames))
    return path


def once(price: str, lots: int, side: str = "buy", tif: str = "GTC", **backtest: Any) -> Config:
    """One ``Once`` strategy on BTC-USD (tick 0.01, lot 0.001), fees 0.001 taker, -0.0001 maker."""
    ticks = round(float(price) * 100)
    return config(
        [{"name": "once", "class": "tests.backtest.strategies:Once", "symbols": ["BTC-USD"],
          "params": {"side": side, "price_ticks": ticks, "lots": lots, "time_in_force": tif}}],
        backtest=backtest,
        instruments=[{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001",
                      "maker_fee": "-0.0001", "taker_fee": "0.001"}],
    )  # fmt: skip
