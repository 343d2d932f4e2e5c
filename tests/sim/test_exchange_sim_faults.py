"""The own dialect's faults and edges: the `expire` fault, the order list's filter."""

from __future__ import annotations

import httpx
import pytest

from trading_engine import Instrument
from trading_engine.sim.exchange_sim import ExchangeSimulator, Faults

pytestmark = pytest.mark.asyncio


async def test_the_expire_fault_cancels_resting_orders_with_the_reason_expired() -> None:
    sim = ExchangeSimulator([Instrument("BTC-USD", "0.01", "0.001")], api_key="k", port=0, seed=1)
    await sim.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sim.port}", headers={"X-API-Key": "k"}
        ) as http:
            placed = await http.post("/orders", json={
                "client_order_id": "a-1", "symbol": "BTC-USD", "side": "buy", "type": "limit",
                "price": "1.00", "quantity": "0.010",
            })  # fmt: skip
            assert placed.json()["status"] == "new"
            sim.step()  # without the fault, the order rests on
            assert (await http.get("/orders/a-1")).json()["status"] == "new"
            sim.faults = Faults(expire=1.0)
            sim.step()
            expired = (await http.get("/orders/a-1")).json()
            assert (expired["status"], expired["reason"]) == ("canceled", "expired")
            assert (await http.get("/orders", params={"status": "open"})).json() == []
            assert sim.matching.resting == {}
            assert sim.counts["expired"] == 1
    finally:
        await sim.stop()


async def test_an_order_list_filter_other_than_open_is_a_400() -> None:
    sim = ExchangeSimulator([Instrument("BTC-USD", "0.01", "0.001")], api_key="k", port=0, seed=1)
    await sim.start()
    try:
        url = f"http://127.0.0.1:{sim.port}/orders"
        async with httpx.AsyncClient(headers={"X-API-Key": "k"}) as http:
            refused = await http.get(url, params={"status": "filled"})
            assert refused.status_code == 400
            assert refused.json() == {"error": "status must be 'open', not 'filled'"}
            assert (await http.get(url, params={"status": "open"})).json() == []
    finally:
        await sim.stop()


async def test_a_price_or_quantity_as_a_json_number_is_a_400() -> None:
    sim = ExchangeSimulator([Instrument("BTC-USD", "0.01", "0.001")], api_key="k", port=0, seed=1)
    await sim.start()
    try:
        url = f"http://127.0.0.1:{sim.port}/orders"
        order = {"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1.00",
                 "quantity": "0.010"}  # fmt: skip
        async with httpx.AsyncClient(headers={"X-API-Key": "k"}) as http:
            for name, number in (("price", 1.0), ("quantity", 0.01)):
                refused = await http.post(
                    url, json={**order, "client_order_id": f"n-{name}", name: number}
                )
                assert refused.status_code == 400
                assert refused.json()["error"] == f"{name} must be a decimal string"
            assert (await http.post(url, json={**order, "client_order_id": "s"})).status_code == 200
            assert [o["client_order_id"] for o in (await http.get(url)).json()] == ["s"]
    finally:
        await sim.stop()
