"""Backtests: strategies run over recorded markets through the live engine's core.

The same books, dispatcher, risk, ledger and matching engine as a live
session and :mod:`trading_engine.sim.replay`, with the latency, queue
position and fee models a backtest needs. :mod:`.result` is the record a
run produces; the report and parameter sweeps read only that.
"""
