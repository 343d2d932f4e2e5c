"""Venue adapters: one folder per venue (``binance``, ``okx``, ``kraken``).

Each holds that venue's codecs: its market-data dialect
(:class:`~trading_engine.core.feeds.FeedDialect`), its instrument
metadata reader and, where the engine trades there, its order-entry
dialect. Nothing below this package imports a venue; the commands and
the engine choose one by name.
"""
