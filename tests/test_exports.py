import trading_engine

EXPECTED = {
    "BUILD",
    "BookBuilder",
    "BookEntry",
    "BookListener",
    "BookMessage",
    "BookState",
    "BookView",
    "BuildInfo",
    "Config",
    "ConfigError",
    "Decoder",
    "Fill",
    "EngineError",
    "Heartbeat",
    "Instrument",
    "InvalidValue",
    "InvariantError",
    "Level",
    "MessageType",
    "Order",
    "OrderBook",
    "OrderStatus",
    "OrderType",
    "Position",
    "Priority",
    "PriorityEventLoop",
    "Reason",
    "Rejected",
    "Side",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "TimeInForce",
    "Trade",
    "__version__",
    "compiled",
    "create_task",
    "critical",
    "load_config",
    "mark_critical",
    "parse_config",
    "price_param",
    "size_param",
}


def test_public_api_is_pinned() -> None:
    assert set(trading_engine.__all__) == EXPECTED
    assert trading_engine.__all__ == sorted(trading_engine.__all__)


def test_every_exported_name_exists() -> None:
    for name in trading_engine.__all__:
        assert hasattr(trading_engine, name), name
