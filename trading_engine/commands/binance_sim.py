"""``exchange-sim --dialect binance``: the Binance dialect's flags and the simulator they build."""

from __future__ import annotations

import argparse
import os
import ssl
from typing import Any

from ..config import Config
from ..sim.binance import (
    ApiKeys,
    BinanceSimulator,
    LimitSettings,
    SymbolSettings,
    load_ed25519_public_key,
)
from ..sim.exchange_sim import Faults

__all__ = ["add_binance_arguments", "binance_simulator"]


def _whole(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_binance_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--dialect binance`` (ignored by the own dialect)."""
    group = parser.add_argument_group(
        "Binance dialect (--dialect binance)",
        "The HMAC key is --api-key-env's variable with --api-secret-env's; an Ed25519 key is "
        "--ed25519-api-key-env's variable with the public key in --ed25519-public-key. "
        "Either or both.",
    )
    defaults = LimitSettings()
    group.add_argument(
        "--api-secret-env", default="EXCHANGE_API_SECRET", metavar="NAME",
        help="the environment variable holding the HMAC key's secret (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--ed25519-public-key", metavar="FILE",
        help="a PEM Ed25519 public key the venue accepts signatures of (default: none)",
    )  # fmt: skip
    group.add_argument(
        "--ed25519-api-key-env", metavar="NAME",
        help="the environment variable holding the Ed25519 key's API key (default: none)",
    )  # fmt: skip
    group.add_argument(
        "--clock-skew-ms", type=_whole, default=0, metavar="MS",
        help="move the venue's clock by MS milliseconds (serverTime and the recvWindow "
        "check; default: 0)",
    )  # fmt: skip
    group.add_argument(
        "--weight-limit", type=_positive, default=defaults.weight_per_minute, metavar="N",
        help="request weight per minute before 429 (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--order-limit-10s", type=_positive, default=defaults.orders_per_10s, metavar="N",
        help="orders per 10 seconds before 429 (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--order-limit-1d", type=_positive, default=defaults.orders_per_day, metavar="N",
        help="orders per day before 429 (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--ban-after", type=_positive, default=defaults.ban_after, metavar="N",
        help="requests sent during a 429's Retry-After before a 418 ban (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--ban-s", type=_positive, default=defaults.ban_s, metavar="S",
        help="how long a 418 ban lasts, in seconds (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--stp-mode", default="EXPIRE_MAKER",
        choices=["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        help="the symbols' default self-trade prevention mode (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--max-num-orders", type=_positive, default=200, metavar="N",
        help="the MAX_NUM_ORDERS filter: open orders per symbol (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--listen-key-ttl-s", type=_seconds, default=3600.0, metavar="S",
        help="how long a listen key lives without a keepalive (default: %(default)s)",
    )  # fmt: skip


def _env(flag: str, name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{flag}: the environment variable {name} is not set")
    return value


def binance_simulator(
    args: argparse.Namespace,
    config: Config,
    faults: Faults,
    tls: ssl.SSLContext | None,
) -> BinanceSimulator:
    """The simulator ``exchange-sim --dialect binance`` serves.

    Raises ValueError with a one-line message naming the flag at fault.
    """
    keys = ApiKeys()
    api_key = os.environ.get(args.api_key_env)
    if api_key:
        keys.hmac[api_key] = _env("--api-secret-env", args.api_secret_env)
    if (args.ed25519_public_key is None) != (args.ed25519_api_key_env is None):
        raise ValueError("--ed25519-public-key and --ed25519-api-key-env: give both or neither")
    if args.ed25519_public_key is not None:
        try:
            public = load_ed25519_public_key(args.ed25519_public_key)
        except ValueError as exc:
            raise ValueError(f"--ed25519-public-key: {exc}") from None
        keys.ed25519[_env("--ed25519-api-key-env", args.ed25519_api_key_env)] = public
    if not keys.hmac and not keys.ed25519:
        raise ValueError(
            f"--api-key-env: the environment variable {args.api_key_env} is not set "
            "(and no --ed25519-public-key)"
        )
    symbols = {
        item.symbol: SymbolSettings(
            min_quantity=None if item.min_quantity is None else str(item.min_quantity),
            min_notional=None if item.min_notional is None else str(item.min_notional),
            maker_fee=str(item.maker_fee),
            taker_fee=str(item.taker_fee),
        )
        for item in config.instruments
    }
    limits = LimitSettings(
        weight_per_minute=args.weight_limit,
        orders_per_10s=args.order_limit_10s,
        orders_per_day=args.order_limit_1d,
        ban_after=args.ban_after,
        ban_s=args.ban_s,
    )
    common: dict[str, Any] = {
        "host": args.host, "port": args.port, "feed": args.feed, "feed_shards": args.feed_shards,
        "stamp_arrivals": args.stamp_arrivals, "rate": args.rate, "seed": args.seed,
        "faults": faults, "ssl_context": tls,
    }  # fmt: skip
    return BinanceSimulator(
        [item.to_instrument() for item in config.instruments],
        keys=keys,
        symbols=symbols,
        limits=limits,
        clock_skew_ms=args.clock_skew_ms,
        stp_mode=args.stp_mode,
        max_num_orders=args.max_num_orders,
        listen_key_ttl_s=args.listen_key_ttl_s,
        **common,
    )
