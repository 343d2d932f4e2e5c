"""Request security against the venue's own worked examples."""

from __future__ import annotations

import pytest

from tests.sim.binance.helpers import API_KEY, ED_API_KEY, SECRET, keys, sign_ed25519
from trading_engine.sim.binance import VenueError
from trading_engine.sim.binance.auth import check_timing, rest_payload, websocket_payload

# The venue's documentation: "SIGNED Endpoint Examples for POST /api/v3/order".
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_the_documented_hmac_example_verifies_in_query_body_and_any_case() -> None:
    api = keys()
    for query, body in (
        (f"{DOC_QUERY}&signature={DOC_SIGNATURE}", ""),
        ("", f"{DOC_QUERY}&signature={DOC_SIGNATURE.upper()}"),
    ):
        payload, signature = rest_payload(query, body)
        assert payload == DOC_QUERY.encode()
        assert api.verify(API_KEY, payload, signature)
    assert not api.verify(API_KEY, DOC_QUERY.encode() + b"0", DOC_SIGNATURE)


def test_the_documented_mixed_example_signs_the_query_then_the_body_without_a_separator() -> None:
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    signature = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    payload, found = rest_payload(query, f"{body}&signature={signature}")
    assert payload == (query + body).encode()
    assert keys().verify(API_KEY, payload, found)


def test_the_documented_websocket_api_example_sorts_the_parameters() -> None:
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": API_KEY,
        "signature": "ignored",
    }
    payload = websocket_payload(params)
    assert payload.decode() == (
        f"apiKey={API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
        "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    signature = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert keys().verify(API_KEY, payload, signature)


def test_ed25519_signatures_are_base64_and_exact() -> None:
    api = keys()
    signature = sign_ed25519(DOC_QUERY)
    assert api.verify(ED_API_KEY, DOC_QUERY.encode(), signature)
    assert not api.verify(ED_API_KEY, DOC_QUERY.encode(), signature.lower())
    assert not api.verify(ED_API_KEY, DOC_QUERY.encode(), "not base64!")
    # The HMAC secret's signature means nothing for the Ed25519 key.
    assert not api.verify(ED_API_KEY, DOC_QUERY.encode(), DOC_SIGNATURE)


@pytest.mark.parametrize(
    ("key", "code"), [(None, -2014), ("", -2014), ("bad key!", -2014), ("A" * 64, -2015)]
)
def test_a_missing_malformed_or_unknown_key_is_refused_401(key: str | None, code: int) -> None:
    with pytest.raises(VenueError) as refused:
        keys().check_key(key)
    assert (refused.value.status, refused.value.code) == (401, code)
    assert keys().check_key(API_KEY) == API_KEY


def test_a_request_without_or_with_two_signatures_is_refused() -> None:
    with pytest.raises(VenueError) as missing:
        rest_payload(DOC_QUERY, "")
    assert missing.value.code == -1102
    with pytest.raises(VenueError) as twice:
        rest_payload(f"{DOC_QUERY}&signature=a&signature=b", "")
    assert twice.value.code == -1101


NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("timestamp", "window", "refused"),
    [
        (NOW, None, None),
        (NOW - 5000, None, None),  # the default window is 5000 ms, inclusive
        (NOW - 5001, None, "outside of the recvWindow"),
        (NOW - 59_000, "60000", None),
        (NOW + 999, None, None),
        (NOW + 1000, None, "1000ms ahead"),
        ((NOW - 6000) * 1000, None, "outside of the recvWindow"),  # microseconds
        ((NOW - 100) * 1000, None, None),
    ],
)
def test_timing_follows_the_documented_rule(
    timestamp: int, window: str | None, refused: str | None
) -> None:
    if refused is None:
        check_timing(str(timestamp), window, NOW)
        return
    with pytest.raises(VenueError) as error:
        check_timing(str(timestamp), window, NOW)
    assert (error.value.status, error.value.code) == (400, -1021)
    assert refused in error.value.msg


def test_a_receive_window_over_a_minute_or_a_bad_timestamp_is_refused() -> None:
    for timestamp, window, code in (
        (str(NOW), "60001", -1131),
        ("abc", None, -1102),
        (None, None, -1102),
        ("1.5", None, -1102),
    ):
        with pytest.raises(VenueError) as error:
            check_timing(timestamp, window, NOW)
        assert error.value.code == code


def test_the_secret_is_case_sensitive() -> None:
    payload = DOC_QUERY.encode()
    assert not keys().verify(
        API_KEY,
        payload,
        __import__("hmac").new(SECRET.lower().encode(), payload, "sha256").hexdigest(),
    )
