"""ccxt's Binance client, written by no one here, against the simulator's Binance dialect.

ccxt signs, sends and parses by its own reading of the venue's API; a
request it makes that the simulator refuses, or an answer it cannot
parse, is a defect of the simulator. The answers are also checked field
by field against the venue's documented responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from tests.sim.binance.helpers import (
    API_KEY,
    ED_API_KEY,
    SECRET,
    SYMBOL,
    book_prices,
    ed_private_pem,
    running,
)
from trading_engine.sim.binance import BinanceSimulator, SymbolSettings

pytestmark = pytest.mark.asyncio

MARKET = "BTC/USDT"

# The venue's documented response fields (rest-api.md).
# What every order answer carries; each kind adds its own.
ORDER_FIELDS = {
    "symbol",
    "orderId",
    "orderListId",
    "clientOrderId",
    "price",
    "origQty",
    "executedQty",
    "origQuoteOrderQty",
    "cummulativeQuoteQty",
    "status",
    "timeInForce",
    "type",
    "side",
    "selfTradePreventionMode",
}
RESULT_FIELDS = ORDER_FIELDS | {"transactTime", "workingTime"}
FULL_FIELDS = RESULT_FIELDS | {"fills"}
FILL_FIELDS = {"price", "qty", "commission", "commissionAsset", "tradeId"}
QUERY_FIELDS = ORDER_FIELDS | {
    "stopPrice",
    "icebergQty",
    "time",
    "updateTime",
    "isWorking",
    "workingTime",
}
CANCEL_FIELDS = ORDER_FIELDS | {"origClientOrderId", "transactTime"}
TRADE_FIELDS = {
    "symbol",
    "id",
    "orderId",
    "orderListId",
    "price",
    "qty",
    "quoteQty",
    "commission",
    "commissionAsset",
    "time",
    "isBuyer",
    "isMaker",
    "isBestMatch",
}


def binance(sim: BinanceSimulator, api_key: str = API_KEY, secret: str = SECRET) -> Any:
    """ccxt's client pointed at the simulator: its spot REST URLs, spot markets only."""
    exchange = ccxt.binance({"apiKey": api_key, "secret": secret, "enableRateLimit": False})
    base = f"http://127.0.0.1:{sim.port}/api/v3"
    exchange.urls["api"]["public"] = base
    exchange.urls["api"]["private"] = base
    # Margin pairs and currencies come from other Binance APIs (sapi) the simulator does not serve.
    exchange.options["fetchMarkets"] = {"types": ["spot"]}
    exchange.options["fetchMargins"] = False
    exchange.options["fetchCurrencies"] = False
    return exchange


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[BinanceSimulator]:
    settings = {SYMBOL: SymbolSettings(maker_fee="0.001", taker_fee="0.002")}
    async with running(symbols=settings) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def client(sim: BinanceSimulator) -> AsyncIterator[Any]:
    exchange = binance(sim)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def test_ccxt_reads_the_market_from_exchange_info(client: Any) -> None:
    market = client.market(MARKET)
    assert (market["id"], market["base"], market["quote"], market["spot"]) == (
        SYMBOL,
        "BTC",
        "USDT",
        True,
    )
    assert market["precision"]["price"] == 0.01
    assert market["precision"]["amount"] == 0.001
    assert market["limits"]["amount"]["min"] == 0.001


async def test_ccxt_places_reads_lists_and_cancels_a_resting_limit_order(
    sim: BinanceSimulator, client: Any
) -> None:
    bid, _ = book_prices(sim)
    price = float(Decimal(bid) - Decimal("0.50"))
    placed = await client.create_order(
        MARKET, "limit", "buy", 0.25, price, {"clientOrderId": "t-1"}
    )
    assert set(placed["info"]) == FULL_FIELDS
    assert (placed["status"], placed["clientOrderId"], placed["filled"]) == ("open", "t-1", 0.0)
    assert placed["info"]["timeInForce"] == "GTC"

    fetched = await client.fetch_order(placed["id"], MARKET)
    assert set(fetched["info"]) == QUERY_FIELDS
    assert (fetched["status"], fetched["price"], fetched["amount"]) == ("open", price, 0.25)
    by_client_id = await client.fetch_order(None, MARKET, {"origClientOrderId": "t-1"})
    assert by_client_id["id"] == placed["id"]

    listed = await client.fetch_open_orders(MARKET)
    assert [o["id"] for o in listed] == [placed["id"]]
    assert set(listed[0]["info"]) == QUERY_FIELDS

    canceled = await client.cancel_order(placed["id"], MARKET)
    assert set(canceled["info"]) == CANCEL_FIELDS
    assert canceled["status"] == "canceled"
    assert canceled["info"]["origClientOrderId"] == "t-1"
    assert await client.fetch_open_orders(MARKET) == []
    assert (await client.fetch_order(placed["id"], MARKET))["status"] == "canceled"


async def test_ccxt_order_that_takes_fills_and_its_trades_carry_the_commission(
    sim: BinanceSimulator, client: Any
) -> None:
    _, ask = book_prices(sim)
    taken = await client.create_order(
        MARKET, "limit", "buy", 0.01, float(ask), {"timeInForce": "IOC"}
    )
    assert set(taken["info"]) == FULL_FIELDS
    assert taken["status"] == "closed"
    assert taken["filled"] == 0.01
    [fill] = taken["info"]["fills"]
    assert set(fill) == FILL_FIELDS
    # A buyer pays the taker rate (0.2 %) in the base asset: 0.01 * 0.002.
    assert (fill["price"], fill["qty"], fill["commission"], fill["commissionAsset"]) == (
        f"{Decimal(ask):.8f}",
        "0.01000000",
        "0.00002000",
        "BTC",
    )
    trades = await client.fetch_my_trades(MARKET)
    assert len(trades) == 1
    assert set(trades[0]["info"]) == TRADE_FIELDS
    trade = trades[0]
    assert (trade["order"], trade["side"], trade["price"], trade["amount"]) == (
        taken["id"],
        "buy",
        float(ask),
        0.01,
    )
    assert trade["takerOrMaker"] == "taker"
    assert trade["fee"] == {"currency": "BTC", "cost": 0.00002}
    assert trade["info"]["quoteQty"] == f"{Decimal(ask) * Decimal('0.01'):.8f}"


async def test_ccxt_sees_a_resting_order_fill_as_a_maker_when_the_book_comes_to_it(
    sim: BinanceSimulator, client: Any
) -> None:
    bid, _ = book_prices(sim)
    placed = await client.create_order(MARKET, "limit", "sell", 0.002, float(bid) + 0.05)
    for _ in range(20_000):
        if sim.binance_orders[int(placed["id"])].filled:
            break
        sim.step([SYMBOL])
    trades = await client.fetch_my_trades(MARKET)
    assert trades, "the book never came to the order"
    assert all(t["order"] == placed["id"] and t["takerOrMaker"] == "maker" for t in trades)
    # A seller pays the maker rate (0.1 %) in the quote asset.
    first = trades[0]
    assert first["fee"]["currency"] == "USDT"
    assert Decimal(first["info"]["commission"]) == (
        Decimal(first["info"]["quoteQty"]) * Decimal("0.001")
    ).quantize(Decimal("1e-8"))
    fetched = await client.fetch_order(placed["id"], MARKET)
    assert fetched["filled"] == pytest.approx(sum(t["amount"] for t in trades))


async def test_ccxt_post_only_that_would_take_is_refused(
    sim: BinanceSimulator, client: Any
) -> None:
    _, ask = book_prices(sim)
    with pytest.raises(ccxt.InvalidOrder, match="Order would immediately match and take"):
        await client.create_order(MARKET, "limit", "buy", 0.01, float(ask), {"postOnly": True})
    bid, _ = book_prices(sim)
    maker = await client.create_order(MARKET, "limit", "buy", 0.01, float(bid), {"postOnly": True})
    assert maker["info"]["orderId"] > 0  # LIMIT_MAKER answers ACK by default
    assert (await client.fetch_order(maker["id"], MARKET))["info"]["type"] == "LIMIT_MAKER"


async def test_ccxt_unknown_orders_are_order_not_found(sim: BinanceSimulator, client: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await client.fetch_order("987654", MARKET)
    _, ask = book_prices(sim)
    filled = await client.create_order(MARKET, "market", "buy", 0.001)
    assert filled["status"] == "closed"
    assert float(ask) >= filled["average"] > 0
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await client.cancel_order(filled["id"], MARKET)


async def test_a_wrong_secret_is_refused_with_minus_1022(sim: BinanceSimulator) -> None:
    exchange = binance(sim, secret=SECRET[::-1])
    try:
        await exchange.load_markets()  # public: no signature
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await exchange.fetch_open_orders(MARKET)
    finally:
        await exchange.close()
    assert sim.counts["error_-1022"] == 1


async def test_an_unknown_key_is_refused_with_minus_2015(sim: BinanceSimulator) -> None:
    exchange = binance(sim, api_key="A" * 64)
    try:
        await exchange.load_markets()
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await exchange.fetch_open_orders(MARKET)
    finally:
        await exchange.close()


@pytest.mark.parametrize(
    ("skew_ms", "message"),
    [(20_000, "outside of the recvWindow"), (-1_500, "1000ms ahead of the server")],
)
async def test_a_timestamp_out_of_the_window_is_refused_with_minus_1021(
    sim: BinanceSimulator, client: Any, skew_ms: int, message: str
) -> None:
    # ccxt sends recvWindow 10000; the venue's clock runs 20 s ahead (or 1.5 s behind).
    sim.clock_skew_ms = skew_ms
    with pytest.raises(ccxt.InvalidNonce, match=message):
        await client.fetch_open_orders(MARKET)
    sim.clock_skew_ms = 0
    assert await client.fetch_open_orders(MARKET) == []


async def test_ccxt_signs_with_an_ed25519_key(sim: BinanceSimulator) -> None:
    exchange = binance(sim, api_key=ED_API_KEY, secret=ed_private_pem())
    try:
        await exchange.load_markets()
        bid, _ = book_prices(sim)
        placed = await exchange.create_order(MARKET, "limit", "buy", 0.01, float(bid))
        canceled = await exchange.cancel_order(placed["id"], MARKET)
        assert canceled["status"] == "canceled"
    finally:
        await exchange.close()
    assert "error_-1022" not in sim.counts
