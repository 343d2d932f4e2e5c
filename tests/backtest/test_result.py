"""The backtest record round-trips through JSON exactly."""

from __future__ import annotations

import orjson
import pytest

from trading_engine.backtest.result import (
    BacktestMeta,
    BacktestResult,
    FillRecord,
    MarkSample,
    OrderRecord,
)
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Side


def _result() -> BacktestResult:
    inst = {"BTC-USD": Instrument("BTC-USD", "0.01", "0.001")}
    meta = BacktestMeta(
        data=("a.jsonl.gz",), from_ns=None, to_ns=5, first_ns=1, last_ns=4, events=3,
        frames=2, wall_s=0.25, sample_interval_ns=10**9, fill_model="queue:front",
        feed_latency="constant:0", order_latency="constant:0",
        skipped={"out_of_order": 1}, parameters={"spread": "3"},
    )  # fmt: skip
    fill = FillRecord(2, "mm", "BTC-USD", "d-mm-1", Side.SELL, 10_001, 3, "maker", -7)
    order = OrderRecord(
        1, 2, "mm", "BTC-USD", "d-mm-1", Side.SELL, "limit", "gtc", 10_001, 5, 3, "canceled"
    )
    marks = [MarkSample(1, "BTC-USD", 10_000, 10_002), MarkSample(2, "BTC-USD", None, 10_002)]
    return BacktestResult(meta, inst, ("mm",), [fill], [order], marks, {("mm", "BTC-USD"): -3})


def test_round_trip_is_exact() -> None:
    result = _result()
    again = BacktestResult.from_json(result.to_json())
    for name in ("meta", "strategies", "fills", "orders", "marks", "end_positions"):
        assert getattr(again, name) == getattr(result, name), name
    assert again.instruments["BTC-USD"].tick_size == "0.01"
    assert again.to_json() == result.to_json()


def test_money_and_prices_are_decimal_strings() -> None:
    doc = orjson.loads(_result().to_json())
    fill = doc["fills"][0]
    assert (fill["price"], fill["quantity"], fill["fee"]) == ("100.01", "0.003", "-0.00007")
    assert doc["orders"][0]["price"] == "100.01"


def test_a_damaged_document_names_the_field() -> None:
    doc = orjson.loads(_result().to_json())
    del doc["fills"][0]["fee_units"]
    with pytest.raises(ValueError, match="fee_units"):
        BacktestResult.from_json(orjson.dumps(doc))
