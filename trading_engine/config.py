"""Configuration: one TOML file, validated whole at start-up.

Every section is a frozen pydantic model that forbids unknown keys. Any key
may be overridden by an environment variable
``TRADING_ENGINE__<SECTION>__<KEY>`` (``TRADING_ENGINE__FEED__PORT=7001``).
Overrides apply to the table sections; the ``[[instruments]]``,
``[[strategies]]`` and ``[[feeds]]`` arrays are set only in the file.

An invalid file or value raises :class:`ConfigError` whose ``problems``
name the key, the value and what was expected. Secrets are never in the
file: it names the environment variables that hold them.
"""

from __future__ import annotations

import codecs
import difflib
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .core.breaker import BreakerSettings
from .core.errors import ConfigError
from .core.fees import FeeSchedule, parse_fee_rate
from .core.instruments import Instrument
from .core.orders import CLIENT_ID_RULES, client_id_problem
from .core.risk import RiskLimits
from .core.sharding import shard_of, shards_of

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AdminConfig",
    "BacktestConfig",
    "BreakerConfig",
    "Config",
    "EngineConfig",
    "FeedConfig",
    "FeedHandlerConfig",
    "GatewayConfig",
    "InstrumentConfig",
    "JournalConfig",
    "RiskConfig",
    "StrategyConfig",
    "budget_problems",
    "default_config_text",
    "did_you_mean",
    "load_config",
    "load_default_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("config/engine.toml")
ENV_PREFIX = "TRADING_ENGINE__"


def _positive_decimal(value: str) -> str:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"expected a decimal string such as '0.01', got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"expected a positive decimal string, got {value!r}")
    if number.adjusted() >= 40 or number.adjusted() < -40:
        raise ValueError(f"expected a decimal between 1e-40 and 1e40, got {value!r}")
    return value


PositiveDecimal = Annotated[str, AfterValidator(_positive_decimal)]


def _fee_rate(value: str) -> str:
    parse_fee_rate(value)  # raises ValueError with the reason
    return value


#: A fee rate: a decimal string fraction of the notional, negative for a rebate.
FeeRate = Annotated[str, AfterValidator(_fee_rate)]


class _Section(BaseModel):
    # inf would pass every ``gt=`` bound and then break a timer or a window.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _sixty_four_bits(cls, value: Any) -> Any:
        """No integer setting beyond 64 bits: a count or limit that large is a typo, and
        the parts it configures (a window, a rate, C's ``gc`` threshold) overflow."""
        if type(value) is int and not -(2**63) <= value < 2**63:
            raise ValueError("is out of range (at most 2**63 - 1)")
        return value


class EngineConfig(_Section):
    """``[engine]``: the event loop and process-wide settings."""

    loop: Literal["priority", "asyncio", "uvloop"] = Field(
        "priority", description="event loop implementation"
    )
    slow_callback_s: float = Field(0.001, gt=0, description="a callback slower than this is slow")
    busy_poll_s: float = Field(
        0.0,
        ge=0,
        le=60,
        description="priority loop: poll without sleeping for this long after activity "
        "(keeps the core hot; burns it)",
    )
    gc_freeze: bool = Field(
        True, description="gc.freeze() once started: start-up objects leave the collector's sight"
    )
    gc_threshold: int | None = Field(
        10_000,
        ge=1,
        le=2**31 - 1,
        description="generation-0 collection threshold (None: Python's default)",
    )
    deployment: str = Field(
        "te",
        pattern=r"^[A-Za-z0-9]{1,8}$",
        description="this deployment's name, the first part of every client order id: the "
        "venue's fills of orders carrying it are this deployment's positions, whatever "
        "the worker count or journal (deployments sharing a venue account need distinct names)",
    )
    shard: int = Field(0, ge=0, description="which shard of the symbol universe this process owns")
    shards: int = Field(1, ge=1, le=256, description="how many shards the universe is split into")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    strategy_budget_s: float = Field(
        0.005, gt=0, description="time a suspended strategy hook may take before it is dropped"
    )
    strategy_error_limit: int = Field(
        5, ge=1, description="consecutive errors before a strategy is disabled"
    )
    closed_order_retention_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="how long a closed order stays in memory for late fills and answers",
    )
    check_invariants: bool = Field(
        False,
        description="check the ledger's invariants after every order event (a debug setting "
        "for soak runs: slow, raises on the first broken one)",
    )
    initial_trading_state: Literal["active", "reducing", "halted"] | None = Field(
        None,
        description="start at least this strict: start-up takes the strictest of it, the "
        "journal's last state and any state set while it ran (the supervisor sets it for the "
        "workers it starts)",
    )
    shutdown_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="on SIGTERM/SIGINT, how long to wait for every open order's final state",
    )


class FeedConfig(_Section):
    """``[feed]``: the market-data TCP server."""

    host: str = "127.0.0.1"
    port: int = Field(7001, ge=0, le=65535)
    max_frame_bytes: int = Field(65536, ge=64, le=16 * 1024 * 1024)
    recv_buffer_bytes: int = Field(65536, ge=4096, le=16 * 1024 * 1024)
    idle_timeout_s: float = Field(
        5.0, gt=0, description="silence before a connection's books go stale"
    )
    bad_frame_limit: int = Field(
        100, ge=1, description="consecutive bad frames before a connection is closed"
    )
    capture_path: str | None = Field(
        None,
        description="file to record every complete frame received to, rejected ones "
        "included (oversized and truncated frames are never held whole, so never recorded)",
    )


class AdminConfig(_Section):
    """``[admin]``: the operators' HTTP endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(9100, ge=0, le=65535)
    token_env: str = "TRADING_ENGINE_ADMIN_TOKEN"
    metrics_symbols: int = Field(
        100,
        ge=0,
        description="symbols with per-symbol series in /metrics (all when this many or "
        "fewer are configured; else the active ones, first in configuration order)",
    )


class GatewayConfig(_Section):
    """``[gateway]``: the exchange order API client."""

    base_url: str = Field(
        "http://127.0.0.1:8080", pattern=r"^https?://", description="http:// or https://"
    )
    api_key_env: str = "EXCHANGE_API_KEY"
    api_secret_env: str | None = Field(
        None,
        description="venue 'binance': the environment variable holding the HMAC-SHA256 "
        "secret key (set this or private_key_env)",
    )
    private_key_env: str | None = Field(
        None,
        description="venue 'binance': the environment variable holding the Ed25519 private "
        "key, its PKCS#8 PEM text or the path of a PEM file (passphrase, if any, in "
        "<name>_PASSPHRASE)",
    )
    recv_window_ms: int = Field(
        5000,
        ge=1,
        le=60_000,
        description="venue 'binance': recvWindow sent with every signed request; start-up "
        "refuses a venue clock further off than this",
    )
    clock_check_s: float = Field(
        60.0, gt=0, le=3600, description="venue 'binance': how often the venue's clock is measured"
    )
    user_stream: bool = Field(
        True,
        description="venue 'binance': take order states and fills pushed on the account's user "
        "data stream (WebSocket API), the fills poll then slowing to user_stream_fills_poll_s; "
        "false: fills are only polled",
    )
    ws_api_url: str | None = Field(
        None,
        pattern=r"^wss?://",
        description="venue 'binance': the WebSocket API the user data stream subscribes on "
        "(default: Binance's for base_url https://api.binance.com, the Spot Testnet's for "
        "https://testnet.binance.vision, else /ws-api/v3 on base_url's host, as the simulator "
        "serves it)",
    )
    user_stream_ping_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="venue 'binance': a user data stream quiet this long is sent a ping request",
    )
    user_stream_silence_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="venue 'binance': a user data stream quiet this long (its ping unanswered) "
        "is connected again; more than user_stream_ping_s",
    )
    user_stream_fills_poll_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="venue 'binance': how often fills are polled while the user data stream is "
        "live (a safety net; while it is down, every fills_poll_s)",
    )
    venue: Literal["own", "binance"] = Field(
        "own",
        description="the order API's dialect: the project's own exchange API, or Binance spot "
        "(client order ids then fit Binance's 36 characters of [A-Za-z0-9_-])",
    )
    ca_file: str | None = Field(
        None,
        description="PEM file of extra certificate authorities trusted for https:// "
        "(besides the system's)",
    )
    timeout_s: float = Field(0.5, gt=0)
    mode: Literal["simulated", "httpx", "fast"] = Field(
        "fast",
        description="where orders go: the exchange API with POST /orders on the pre-warmed "
        "fast path, the same API all over httpx, or the in-process venue",
    )
    fast_connections: int = Field(2, ge=1, le=64, description="fast-path connections kept warm")
    max_requests_per_s: int = Field(
        120,
        ge=1,
        description="the venue's request budget: requests of any kind started in any 1 s "
        "(the default fits the default risk.max_orders_per_s: 50 orders, 50 cancels and "
        "10 fill polls)",
    )
    max_order_wait_s: float = Field(
        0.0,
        ge=0,
        le=1,
        description="how long a new order may wait for a request slot before it is "
        "refused rate_limited (0: it has one at once or is refused)",
    )
    max_retry_after_s: float = Field(
        30.0, gt=0, description="cap on a 429's Retry-After (the whole venue pauses that long)"
    )
    fills_poll_s: float = Field(0.1, gt=0, description="how often /fills is polled")
    order_retry_max: int = Field(
        2,
        ge=0,
        le=10,
        description="times an order answered 429 is sent again (after the venue's Retry-After) "
        "before it is refused venue_rate_limited",
    )
    order_retry_deadline_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="an order answered 429 is sent again only within this time of its "
        "first send; a Retry-After that ends later closes it at once (venue_rate_limited)",
    )
    resting_order_check_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="a resting order the venue canceled or expired on its own is noticed "
        "within this time (GET /orders?status=open every half of it, then a read-back)",
    )
    settle_backoff_s: float = Field(
        0.05, gt=0, description="first delay before reading back an order of unknown outcome"
    )
    read_backoff_max_s: float = Field(
        2.0, gt=0, description="cap on the back-off between failed reads and cancels"
    )
    reconnect_backoff_s: float = Field(
        0.05, gt=0, description="fast path: first delay before reconnecting a failed connection"
    )
    reconnect_backoff_max_s: float = Field(
        5.0, gt=0, description="fast path: cap on the reconnect back-off"
    )


class BreakerConfig(_Section):
    """``[breaker]``: the order gateway's circuit breaker."""

    window_size: int = Field(20, ge=1)
    minimum_calls: int = Field(10, ge=1)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    slow_call_s: float = Field(0.25, gt=0)
    slow_call_rate_threshold: float = Field(1.0, gt=0, le=1)
    open_s: float = Field(5.0, gt=0)
    half_open_calls: int = Field(3, ge=1)

    def settings(self) -> BreakerSettings:
        """These thresholds as the breaker's own settings type."""
        return BreakerSettings(**self.model_dump())


class RiskConfig(_Section):
    """``[risk]``: pre-trade limits."""

    max_order_quantity: PositiveDecimal = "10"
    max_order_notional: PositiveDecimal = "1000000"
    max_position: PositiveDecimal = "100"
    price_band: float = Field(0.05, gt=0, lt=1)
    max_orders_per_s: int = Field(
        50,
        ge=1,
        description="orders in any 1 s, all strategies (the shipped file sets 20: with a "
        "cancel each and the fill polls that fits the gateway's budget of 50)",
    )
    strategy_max_orders_per_s: int | None = Field(
        None, ge=1, description="per-strategy order rate; default: max_orders_per_s"
    )
    cancel_on_halt: bool = True
    self_trade: Literal["refuse", "cancel_resting", "allow"] = Field(
        "refuse",
        description="an order that would trade with one of the engine's own resting orders on "
        "its symbol: refuse it (denial self_trade), cancel the resting ones first, or allow it",
    )

    def limits(self) -> RiskLimits:
        """These limits as the risk engine's own settings type."""
        return RiskLimits(
            max_order_quantity=Decimal(self.max_order_quantity),
            max_order_notional=Decimal(self.max_order_notional),
            max_position=Decimal(self.max_position),
            price_band=self.price_band,
            max_orders_per_s=self.max_orders_per_s,
            strategy_max_orders_per_s=self.strategy_max_orders_per_s,
        )


class JournalConfig(_Section):
    """``[journal]``: the order journal (SQLite) and start-up reconciliation."""

    path: str = Field(
        "state/journal.db",
        min_length=1,
        description="journal file, relative to the working directory; ':memory:' keeps "
        "nothing across restarts",
    )
    flush_ms: float = Field(
        5.0, gt=0, le=1000, description="journal rows are written in one transaction this often"
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal",
        description="SQLite synchronous mode: 'normal' survives a killed process, "
        "'full' also a power loss (slower commits)",
    )
    unknown_orders: Literal["cancel", "adopt", "refuse"] = Field(
        "cancel",
        description="open orders on the venue that the journal does not know: cancel them, "
        "adopt them, or refuse to become ready",
    )
    write_timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="a journal write not done within this many seconds (another process "
        "holding a write lock, a stuck disk) halts trading",
    )
    accept_new_venue: bool = Field(
        False,
        description="start even though the journal was written against another venue or "
        "account, or the venue's fills log was reset: record this venue, restart the fills "
        "cursor (prefer the one-off `run --accept-new-venue`)",
    )


class InstrumentConfig(_Section):
    """One ``[[instruments]]`` entry."""

    symbol: str = Field(min_length=1, max_length=64)
    tick_size: PositiveDecimal
    lot_size: PositiveDecimal
    maker_fee: FeeRate = Field(
        "0",
        description="fee rate of maker fills, a decimal fraction of the notional "
        "('0.0001' is 1 bp; negative: a rebate)",
    )
    taker_fee: FeeRate = Field(
        "0", description="fee rate of taker fills, a decimal fraction of the notional"
    )
    base_asset: str | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="the asset the instrument trades (BTC of BTCUSDT): a venue fee in it "
        "is valued at the fill's price",
    )
    quote_asset: str | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="the asset prices are in (USDT of BTCUSDT): a venue fee in it is exact",
    )
    min_quantity: PositiveDecimal | None = Field(
        None, description="the venue's smallest order quantity (informational)"
    )
    min_notional: PositiveDecimal | None = Field(
        None, description="the venue's smallest order value, in the quote currency (informational)"
    )

    def to_instrument(self) -> Instrument:
        return Instrument(self.symbol, self.tick_size, self.lot_size)

    def fee_schedule(self) -> FeeSchedule:
        """The instrument's maker and taker rates."""
        return FeeSchedule(parse_fee_rate(self.maker_fee), parse_fee_rate(self.taker_fee))


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


class FeedHandlerConfig(_Section):
    """One ``[[feeds]]`` entry: a feed handler for one venue (``trading-engine feed``).

    ``run`` starts one feed handler process per entry with ``spawn``;
    ``feed VENUE --config FILE`` reads the first entry of that venue (or
    ``--entry N``).
    """

    venue: Literal["binance", "okx", "kraken"]
    symbols: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description="the venue's own symbol names"
    )
    to: list[HostPort] = Field(
        default_factory=list,
        description="engine feed ports, shard i at index i (empty: this engine's own)",
    )
    ws_url: str | None = Field(None, description="the venue's WebSocket URL (None: its default)")
    rest_url: str | None = Field(None, description="the venue's REST URL (None: its default)")
    symbol_map: dict[str, str] = Field(
        default_factory=dict, description="venue symbol to engine symbol, where they differ"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve the handler's /metrics on this port"
    )
    capture_path: str | None = Field(
        None, description="append what the handler receives and publishes to this file"
    )
    spawn: bool = Field(
        True,
        description="run starts this feed handler as a child process (false: it runs on its "
        "own, as docker compose's feed services do)",
    )

    def engine_symbols(self) -> dict[str, str]:
        """Venue symbol to engine symbol, for every symbol of the entry."""
        return {symbol: self.symbol_map.get(symbol, symbol) for symbol in self.symbols}


class StrategyConfig(_Section):
    """One ``[[strategies]]`` entry."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    class_: str = Field(alias="class", min_length=1)
    symbols: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    timer_s: float | None = Field(
        None,
        ge=0.001,
        le=86_400,
        description="call the strategy's on_timer every this many seconds of the engine "
        "clock (None: never)",
    )


def _conversion_key(value: str) -> str:
    asset, sep, quote = value.partition("/")
    if not sep or not asset or not quote or "/" in quote or len(value) > 41:
        raise ValueError(f"expected ASSET/QUOTE such as 'BNB/USDT', got {value!r}")
    return value


class FeesConfig(_Section):
    """``[fees]``: how a venue's fee in another asset is valued."""

    conversion: dict[Annotated[str, AfterValidator(_conversion_key)], PositiveDecimal] = Field(
        default_factory=dict,
        description="'ASSET/QUOTE' = the price of one ASSET in QUOTE ('BNB/USDT' = '600'): "
        "a venue fee in ASSET on an instrument quoted in QUOTE is charged at it",
    )


class BacktestConfig(_Section):
    """``[backtest]``: the models of ``trading-engine backtest`` (docs/backtest.md)."""

    queue_model: Literal["front", "prob", "none"] = Field(
        "prob",
        description="queue position of resting orders: front (every decrease ahead), prob "
        "(split by queue_power), none (fill at the touch, as replay)",
    )
    queue_power: float = Field(
        3.0, gt=0, le=100, description="prob: n of f(x) = x**n (hftbacktest's power model)"
    )
    feed_latency_us: float = Field(
        0.0, ge=0, le=60e6, description="market event to strategy, added to the data's time"
    )
    order_latency_us: float = Field(0.0, ge=0, le=60e6, description="decision to venue")
    response_latency_us: float = Field(0.0, ge=0, le=60e6, description="venue to answer")
    feed_latency_file: str | None = Field(
        None, description="samples (us, one a line, or a Prometheus histogram) instead"
    )
    order_latency_file: str | None = Field(None, description="as feed_latency_file")
    response_latency_file: str | None = Field(None, description="as feed_latency_file")
    sample_interval_s: float = Field(
        1.0, gt=0, le=86_400, description="data time between two marks of each symbol"
    )
    seed: int = Field(0, ge=0, description="seeds the sampled latencies")


class Config(_Section):
    """The whole configuration file."""

    engine: EngineConfig = EngineConfig()
    feed: FeedConfig = FeedConfig()
    admin: AdminConfig = AdminConfig()
    gateway: GatewayConfig = GatewayConfig()
    breaker: BreakerConfig = BreakerConfig()
    risk: RiskConfig = RiskConfig()
    journal: JournalConfig = JournalConfig()
    instruments: list[InstrumentConfig] = Field(default_factory=list)
    strategies: list[StrategyConfig] = Field(default_factory=list)
    feeds: list[FeedHandlerConfig] = Field(default_factory=list)
    backtest: BacktestConfig = BacktestConfig()
    fees: FeesConfig = FeesConfig()

    def instrument_map(self) -> dict[str, Instrument]:
        """The configured instruments by symbol."""
        return {item.symbol: item.to_instrument() for item in self.instruments}

    def fee_schedules(self) -> dict[str, FeeSchedule]:
        """The configured maker and taker fee rates by symbol."""
        return {item.symbol: item.fee_schedule() for item in self.instruments}

    def for_shard(self) -> Config:
        """This configuration cut to the instruments and strategies of ``engine.shard``.

        With one shard it is the configuration itself.
        """
        shards, shard = self.engine.shards, self.engine.shard
        if shards == 1:
            return self
        return self.model_copy(
            update={
                "instruments": [
                    item for item in self.instruments if shard_of(item.symbol, shards) == shard
                ],
                "strategies": [
                    item
                    for item in self.strategies
                    if item.symbols and shard_of(item.symbols[0], shards) == shard
                ],
            }
        )


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    feed_port, admin_port = config.feed.port, config.admin.port
    if feed_port and feed_port == admin_port:
        # With --workers N, worker i uses feed.port + i and admin.port + 1 + i.
        problems.append(f"admin.port: {admin_port} is also feed.port; give each its own port")
    symbols: set[str] = set()
    for i, item in enumerate(config.instruments):
        if item.symbol in symbols:
            problems.append(f"instruments[{i}].symbol: {item.symbol!r} is configured twice")
        symbols.add(item.symbol)
    names: set[str] = set()
    id_rule = CLIENT_ID_RULES[config.gateway.venue]
    for i, strategy in enumerate(config.strategies):
        if strategy.name in names:
            problems.append(f"strategies[{i}].name: {strategy.name!r} is used twice")
        names.add(strategy.name)
        id_problem = client_id_problem(id_rule, config.engine.deployment, strategy.name)
        if id_problem is not None:
            # The venue's client order id rule (gateway.venue) bounds the name.
            problems.append(f"strategies[{i}].name: {id_problem}")
        problems.extend(
            f"strategies[{i}].symbols: {symbol!r} is not a configured instrument"
            for symbol in strategy.symbols
            if symbol not in symbols
        )
    for i, feed in enumerate(config.feeds):
        if len(set(feed.symbols)) != len(feed.symbols):
            problems.append(f"feeds[{i}].symbols: a symbol is listed twice")
        problems.extend(
            f"feeds[{i}].symbol_map: {venue_symbol!r} is not one of the entry's symbols"
            for venue_symbol in feed.symbol_map
            if venue_symbol not in feed.symbols
        )
        engine_symbols = list(feed.engine_symbols().values())
        problems.extend(
            f"feeds[{i}].symbol_map: {symbol!r} is the engine symbol of two venue symbols"
            for symbol in sorted({s for s in engine_symbols if engine_symbols.count(s) > 1})
        )
        if not feed.to and not feed.spawn:
            problems.append(f"feeds[{i}].to: a feed that run does not start needs its engines")
        if not feed.to:
            # Published to this engine: its symbols must be configured here.
            problems.extend(
                f"feeds[{i}].symbols: {engine_symbol!r} is not a configured instrument"
                for engine_symbol in feed.engine_symbols().values()
                if engine_symbol not in symbols
            )
    engine = config.engine
    if engine.shard >= engine.shards:
        problems.append(
            f"engine.shard: {engine.shard} is not below engine.shards ({engine.shards})"
        )
    elif engine.shards > 1:
        for i, strategy in enumerate(config.strategies):
            spans = shards_of(strategy.symbols, engine.shards)
            if len(spans) > 1:
                problems.append(
                    f"strategies[{i}].symbols: {strategy.name!r} trades symbols of shards "
                    f"{sorted(spans)} of {engine.shards}; a strategy must live in one shard"
                )
    gateway = config.gateway
    if gateway.user_stream_silence_s <= gateway.user_stream_ping_s:
        problems.append(
            f"gateway.user_stream_silence_s: {gateway.user_stream_silence_s} must exceed "
            f"gateway.user_stream_ping_s {gateway.user_stream_ping_s} (a ping needs time to be "
            "answered)"
        )
    if gateway.user_stream_fills_poll_s < gateway.fills_poll_s:
        problems.append(
            f"gateway.user_stream_fills_poll_s: {gateway.user_stream_fills_poll_s} is below "
            f"gateway.fills_poll_s {gateway.fills_poll_s} (the poll slows while the stream is "
            "live, never quickens)"
        )
    if config.gateway.settle_backoff_s > config.gateway.read_backoff_max_s:
        problems.append(
            f"gateway.settle_backoff_s: {config.gateway.settle_backoff_s} exceeds "
            f"gateway.read_backoff_max_s {config.gateway.read_backoff_max_s}"
        )
    if config.breaker.minimum_calls > config.breaker.window_size:
        problems.append(
            f"breaker.minimum_calls: {config.breaker.minimum_calls} exceeds "
            f"breaker.window_size {config.breaker.window_size}"
        )
    return problems


def budget_problems(config: Config) -> list[str]:
    """Why the strategies' order rate does not fit the venue's request budget (or nothing).

    Every order may need a cancel, and fills are polled every
    ``gateway.fills_poll_s``: ``2 * risk.max_orders_per_s + 1 / fills_poll_s``
    requests per second must fit in ``gateway.max_requests_per_s``, or
    orders will be refused ``rate_limited`` at full rate. Not an error (the
    refusals are counted); ``run`` logs these at start-up.
    """
    gateway, risk = config.gateway, config.risk
    if gateway.mode == "simulated":
        return []
    polls = 1.0 / gateway.fills_poll_s
    needed = 2 * risk.max_orders_per_s + polls
    if needed <= gateway.max_requests_per_s:
        return []
    return [
        f"gateway.max_requests_per_s: {gateway.max_requests_per_s} is below what "
        f"risk.max_orders_per_s {risk.max_orders_per_s} needs with a cancel per order "
        f"and fill polls every {gateway.fills_poll_s} s ({needed:g} requests/s)"
    ]


def _converted_file_values(
    data: Mapping[str, Any], origins: Mapping[tuple[str, str], str], failed: set[tuple[Any, ...]]
) -> list[str]:
    """The file's values of the wrong TOML type, which validation would have converted.

    Validation converts for the environment's overrides, which are all
    text (``TRADING_ENGINE__FEED__PORT=7001``); a value written in the
    file has its own type, and a wrong one is a mistake: ``port = true``
    would listen on port 1, ``cancel_on_halt = "off"`` would turn the
    switch off. The file alone is validated again in strict mode (JSON's
    rules: no bool for a number, no string for a number or a switch, no
    number for a string; an integer for a float is fine), skipping keys
    the environment overrides and places the first validation already
    named.
    """
    deep = _too_deep(data, (), 0)
    if deep is not None:
        return [deep]  # the JSON reader below stops at its recursion limit
    # The standard library's encoder: integers of any size, and inf/nan as the
    # ``Infinity``/``NaN`` pydantic reads back (orjson refuses the one, nulls the other).
    try:
        Config.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        return [
            _describe(error, origins)
            for error in exc.errors()
            if tuple(error["loc"]) not in failed and tuple(error["loc"])[:2] not in origins
        ]
    return []


#: The deepest nesting of tables and arrays a configuration may have.
MAX_DEPTH: Final = 32


def _too_deep(value: Any, path: tuple[str | int, ...], depth: int) -> str | None:
    """A problem naming the first value nested more than :data:`MAX_DEPTH` deep, or None."""
    if depth > MAX_DEPTH:
        shown = ".".join(
            f"[{part}]" if isinstance(part, int) else str(part) for part in path[:6]
        ).replace(".[", "[")
        return f"{shown}...: nested more than {MAX_DEPTH} tables or arrays deep"
    items: Iterable[tuple[str | int, Any]]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _too_deep(item, (*path, key), depth + 1)
        if found is not None:
            return found
    return None


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], origins: dict[tuple[str, str], str]
) -> list[str]:
    """Apply ``TRADING_ENGINE__<SECTION>__<KEY>`` overrides to ``data``.

    ``origins`` gets the variable each overridden ``(section, key)`` came
    from, so that a problem with it can name the variable.
    """
    problems: list[str] = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            problems.append(f"{name}: expected TRADING_ENGINE__<SECTION>__<KEY>")
            continue
        section, key = parts
        if section in ("instruments", "strategies", "feeds") or section not in Config.model_fields:
            hint = did_you_mean(section, _TABLE_SECTIONS)
            model = None if hint is None else Config.model_fields[hint].annotation
            if not (isinstance(model, type) and key in getattr(model, "model_fields", {})):
                hint = None  # a section without that key: no variable to suggest
            hint = "" if hint is None else f"; did you mean `{_env_name(hint, key)}`?"
            problems.append(f"{name}: no section [{section}] can be overridden{hint}")
            continue
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            problems.append(f"{name}: [{section}] is not a table")
            continue
        table[key] = value
        origins[(section, key)] = name
    return problems


def _describe(error: Mapping[str, Any], origins: Mapping[tuple[str, str], str]) -> str:
    loc = tuple(error["loc"])
    location = ".".join(
        f"[{part}]" if isinstance(part, int) else str(part) for part in loc
    ).replace(".[", "[")
    value = error.get("input")
    if error["type"] == "missing":
        return f"{location}: missing (required)"
    if error["type"] == "extra_forbidden":
        hint = _key_hint(loc)
        variable = origins.get(loc) if len(loc) == 2 else None
        if variable is not None:
            spelled = "" if hint is None else f"; did you mean `{_env_name(loc[0], hint)}`?"
            return f"{variable}: {location} is not a setting (value {value!r}){spelled}"
        spelled = "" if hint is None else f"; did you mean `{hint}`?"
        kind = "section" if len(loc) == 1 else "key"
        return f"{location}: unknown {kind} (value {value!r}){spelled}"
    # A switch as the file writes it (TOML's ``true``, not Python's ``True``).
    shown = ("true" if value else "false") if type(value) is bool else repr(value)
    return f"{location}: {error['msg']} (value {shown})"


def parse_config(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Validate a parsed TOML document plus environment overrides."""
    merged = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in data.items()
    }
    origins: dict[tuple[str, str], str] = {}
    problems = _apply_env(merged, os.environ if environ is None else environ, origins)
    config: Config | None = None
    failed: set[tuple[Any, ...]] = set()
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_describe(error, origins) for error in exc.errors())
        failed = {tuple(error["loc"]) for error in exc.errors()}
    converted = _converted_file_values(data, origins, failed)
    if converted:
        problems.extend(converted)
        config = None
    if config is not None:
        problems.extend(_cross_checks(config))
        for i, item in enumerate(config.instruments):
            try:
                item.to_instrument()
            except ValueError as exc:
                problems.append(f"instruments[{i}]: {exc}")
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid setting(s)", problems)
    assert config is not None
    return config


def default_config_text() -> str:
    """The embedded default configuration (the same as ``config/engine.toml``)."""
    from importlib.resources import files

    return files("trading_engine").joinpath("data/engine.toml").read_text(encoding="utf-8")


def load_default_config(environ: Mapping[str, str] | None = None) -> Config:
    """The embedded default configuration, with environment overrides."""
    return parse_config(tomllib.loads(default_config_text()), environ, "<default config>")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file (default ``config/engine.toml``).

    Raises :class:`~trading_engine.core.errors.ConfigError` naming the file
    when it is missing, cannot be read (a directory, no permission) or is
    not TOML (UTF-8 text, TOML 1.0), and naming each key that is wrong.
    """
    file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = file.read_bytes()
        # UTF-8, with the byte-order mark some editors write taken off.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (a Latin-1 comment, a UTF-16 file)
        # The decoder counts from after a byte-order mark.
        at = exc.start + (3 if raw.startswith(codecs.BOM_UTF8) else 0)
        line = raw.count(b"\n", 0, at) + 1
        message = (
            f"{file}: not valid TOML: line {line}: byte 0x{raw[at]:02x} is not UTF-8 "
            "(save the file as UTF-8)"
        )
        raise ConfigError(message, [message]) from None
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file", [f"{file}: no such file"]) from None
    except OSError as exc:  # a directory, no permission
        message = f"{file}: cannot read: {exc.strerror}"
        raise ConfigError(message, [message]) from None
    except tomllib.TOMLDecodeError as exc:
        message = f"{file}: not valid TOML: {exc}"
        raise ConfigError(message, [message]) from exc
    except RecursionError:  # the TOML reader recurses per nested array or table
        message = f"{file}: nested more than {MAX_DEPTH} tables or arrays deep"
        raise ConfigError(message, [message]) from None
    return parse_config(data, environ, str(file))


# -- "did you mean" ---------------------------------------------------------------------------


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelled ``word`` (difflib, ratio >= 0.6), or None."""
    found = difflib.get_close_matches(word.lower(), list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def closest_strategy_parameter(name: str, class_spec: str, parameter: str) -> str | None:
    """The parameter of strategy ``class_spec`` closest to a misspelled ``parameter``.

    None when nothing is close or the class cannot be loaded (its own error
    is reported elsewhere).
    """
    from .core.errors import StrategyError
    from .core.strategy import load_strategy_class

    try:
        fields = list(load_strategy_class(name, class_spec).Params.model_fields)
    except StrategyError:
        return None
    return did_you_mean(parameter, fields)


def _field_names(model: type[BaseModel]) -> list[str]:
    """The keys a section accepts: each field's alias where it has one (``class``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _section_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The model of ``key``'s value in ``model`` (a section, or a list of them), or None."""
    for name, info in model.model_fields.items():
        if key not in (name, info.alias):
            continue
        annotation = info.annotation
        for candidate in (annotation, *get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def _key_hint(loc: tuple[Any, ...]) -> str | None:
    """For an unknown key at ``loc`` (``("gateway", "bse_url")``): the dotted key it
    most likely meant (``gateway.base_url``), or None."""
    model: type[BaseModel] | None = Config
    path: list[str] = []
    for part in loc[:-1]:
        if isinstance(part, int):
            path[-1] += f"[{part}]"
            continue
        model = _section_model(model, str(part)) if model is not None else None
        path.append(str(part))
    if model is None:
        return None
    hint = did_you_mean(str(loc[-1]), _field_names(model))
    return None if hint is None else ".".join([*path, hint])


#: The sections an environment variable can override.
_TABLE_SECTIONS: Final = tuple(
    name for name in Config.model_fields if name not in ("instruments", "strategies", "feeds")
)


def _env_name(section: str, key: str) -> str:
    """The variable that overrides ``key`` of ``section`` (``key`` may be dotted: its last part)."""
    return f"{ENV_PREFIX}{section.upper()}__{key.rpartition('.')[2].upper()}"
