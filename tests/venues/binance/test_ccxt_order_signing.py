"""The order-entry codec's requests against an independent client: ccxt's Binance.

For the same parameters, timestamp and key, ccxt's ``binance().sign(...)``
and the codec must produce the same URL, body, headers and signature,
with an HMAC secret and with an Ed25519 private key (ccxt takes the PEM as
its secret). Any difference is a defect of the codec: Binance's rules are
the same for both.
"""

from __future__ import annotations

from typing import Any

import ccxt  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trading_engine.core.instruments import Instrument
from trading_engine.core.orders import OrderType
from trading_engine.core.protocol import Side
from trading_engine.venues.binance.orders import BinanceRequest, BinanceSpotCodec
from trading_engine.venues.binance.signing import Ed25519Signer, HmacSha256Signer, Signer

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TS = 1_760_000_000_123
CID = "te-mm-tpl3obog6r-1z"
REST = "https://api.binance.com/api/v3"
INSTRUMENTS = {
    "BTCUSDT": Instrument("BTCUSDT", "0.01", "0.00001"),
    "ETHBTC": Instrument("ETHBTC", "0.00001", "0.0001"),
}


def ed25519_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


KEYS = {"hmac": SECRET, "ed25519": ed25519_pem()}


def pair(kind: str) -> tuple[BinanceSpotCodec, Any]:
    secret = KEYS[kind]
    signer: Signer = HmacSha256Signer(secret) if kind == "hmac" else Ed25519Signer(secret)
    exchange = ccxt.binance({"apiKey": API_KEY, "secret": secret})
    exchange.nonce = lambda: TS
    return BinanceSpotCodec(API_KEY, signer, INSTRUMENTS), exchange


def same(request: BinanceRequest, signed: dict[str, Any]) -> None:
    assert f"https://api.binance.com{request.target}" == signed["url"]
    assert request.method == signed["method"]
    body = None if request.body is None else request.body.decode()
    assert body == signed["body"]
    assert dict(request.headers) == signed["headers"]


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
@pytest.mark.parametrize(
    ("order_type", "post_only", "tif", "params"),
    [
        (
            OrderType.LIMIT,
            False,
            "GTC",
            {"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.00150", "price": "65432.10"},
        ),
        (
            OrderType.LIMIT,
            False,
            "IOC",
            {"type": "LIMIT", "timeInForce": "IOC", "quantity": "0.00150", "price": "65432.10"},
        ),
        (
            OrderType.LIMIT,
            False,
            "FOK",
            {"type": "LIMIT", "timeInForce": "FOK", "quantity": "0.00150", "price": "65432.10"},
        ),
        (
            OrderType.LIMIT,
            True,
            "GTC",
            {"type": "LIMIT_MAKER", "quantity": "0.00150", "price": "65432.10"},
        ),
        (OrderType.MARKET, False, "GTC", {"type": "MARKET", "quantity": "0.00150"}),
    ],
)
def test_new_orders_sign_as_ccxt_signs_them(
    kind: str, order_type: OrderType, post_only: bool, tif: str, params: dict[str, str]
) -> None:
    binance, exchange = pair(kind)
    price = None if order_type is OrderType.MARKET else 6_543_210
    request = binance.new_order_request(
        "BTCUSDT", Side.BUY, order_type, 150, price, CID, TS, tif, post_only
    )
    signed = exchange.sign(
        "order",
        ["private"],
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            **params,
            "newClientOrderId": CID,
            "newOrderRespType": "FULL",
            "recvWindow": 5000,
        },
    )
    assert signed["url"] == f"{REST}/order"
    same(request, signed)


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_reads_cancels_and_lists_sign_as_ccxt_signs_them(kind: str) -> None:
    binance, exchange = pair(kind)
    cases = [
        (
            binance.query_order("ETHBTC", CID, TS),
            ("order", "GET", {"symbol": "ETHBTC", "origClientOrderId": CID}),
        ),
        (
            binance.cancel_order("ETHBTC", CID, TS),
            ("order", "DELETE", {"symbol": "ETHBTC", "origClientOrderId": CID}),
        ),
        (binance.open_orders(TS, "ETHBTC"), ("openOrders", "GET", {"symbol": "ETHBTC"})),
        (binance.open_orders(TS), ("openOrders", "GET", {})),
        (
            binance.my_trades("ETHBTC", TS, from_id=991),
            ("myTrades", "GET", {"symbol": "ETHBTC", "fromId": 991, "limit": 1000}),
        ),
    ]
    for request, (path, method, params) in cases:
        signed = exchange.sign(path, ["private"], method, {**params, "recvWindow": 5000})
        same(request, signed)
