"""Helpers shared by the shipped strategies: decimal params to ticks and lots."""

from __future__ import annotations

from trading_engine import Instrument, InvalidValue, StrategyError


def ticks(strategy: str, key: str, instrument: Instrument, value: str) -> int:
    """A positive price param on the instrument's tick grid, in ticks."""
    try:
        return instrument.price_to_ticks(value)
    except InvalidValue as exc:
        raise StrategyError(
            f"strategy {strategy!r}: params.{key}: {value!r} is not a valid price for "
            f"{instrument.symbol} (tick {instrument.tick_size}): {exc.reason}"
        ) from None


def lots(strategy: str, key: str, instrument: Instrument, value: str) -> int:
    """A positive size param on the instrument's lot grid, in lots."""
    try:
        result = instrument.size_to_lots(value)
    except InvalidValue as exc:
        raise StrategyError(
            f"strategy {strategy!r}: params.{key}: {value!r} is not a valid size for "
            f"{instrument.symbol} (lot {instrument.lot_size}): {exc.reason}"
        ) from None
    if result <= 0:
        raise StrategyError(f"strategy {strategy!r}: params.{key}: must be positive")
    return result
