"""The bench's publisher process.

``python -m trading_engine.commands.bench PORT TICKS INTERVAL_S BURST BACKGROUND_RATE``
sends the ticks (:func:`~trading_engine.commands.bench.ticks.publish`) and
prints their send stamps (``time.monotonic_ns``) as one JSON object.
"""

from __future__ import annotations

import json
import sys

from .ticks import publish

if len(sys.argv) == 6:
    _, port, ticks, interval, burst, rate = sys.argv
    print(json.dumps(publish(int(port), int(ticks), float(interval), int(burst), float(rate))))
else:
    sys.exit("usage: python -m trading_engine.commands.bench PORT TICKS INTERVAL_S BURST RATE")
