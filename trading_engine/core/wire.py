"""The market-data frames as msgspec Structs: typed decoding in C.

One :data:`WIRE_DECODER` call parses a frame and checks every field's JSON
type at once, into a tagged union on ``type``. It is the fast path of
:class:`trading_engine.core.protocol.Decoder`, and deliberately narrower
than the protocol: it refuses anything it is not sure of (an unknown
field, a ``seq`` or ``ts`` out of range, an unknown ``type``, a duplicate
``type`` that disagrees) and the decoder then reads the frame again with
orjson and its full validation, which names the exact :class:`Reason`.
So this module decides no rejection; it only makes the common case cheap.

``seq`` is any non-negative integer here (msgspec cannot bound an integer
past ``2**63 - 1`` and reads larger ones exactly); the decoder sends one
beyond ``2**64 - 1``, which orjson would read as a float, to the
reference path. ``ts`` is bounded to 64-bit signed integers (a ``ts``
between ``2**63`` and ``2**64 - 1`` takes the reference path). So the two
paths agree on every frame. Prices and sizes stay as they came (a string,
an integer or a float) and are converted on the instrument's grid by the
decoder, exactly as on the orjson path.

This module stays interpreted: msgspec builds these classes itself.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = [
    "WIRE_DECODER",
    "WireError",
    "WireHeartbeat",
    "WireSnapshot",
    "WireTrade",
    "WireUpdate",
    "decode_wire",
]

#: A price or a size as it came: a decimal string or a JSON number.
Number = str | int | float
Seq = Annotated[int, msgspec.Meta(ge=0)]
Timestamp = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None
LevelPair = tuple[Number, Number]

#: What a frame the fast path cannot take raises (parse or type errors).
WireError: Final = msgspec.DecodeError


class WireUpdate(msgspec.Struct, tag_field="type", tag="update", forbid_unknown_fields=True):
    """An update frame whose fields all have the right JSON types."""

    symbol: str
    seq: Seq
    bids: list[LevelPair]
    asks: list[LevelPair]
    ts: Timestamp = None


class WireSnapshot(msgspec.Struct, tag_field="type", tag="snapshot", forbid_unknown_fields=True):
    """A snapshot frame whose fields all have the right JSON types."""

    symbol: str
    seq: Seq
    bids: list[LevelPair]
    asks: list[LevelPair]
    ts: Timestamp = None


class WireTrade(msgspec.Struct, tag_field="type", tag="trade", forbid_unknown_fields=True):
    """A trade frame whose fields all have the right JSON types."""

    symbol: str
    seq: Seq
    price: Number
    size: Number
    side: str
    ts: Timestamp = None


class WireHeartbeat(msgspec.Struct, tag_field="type", tag="heartbeat", forbid_unknown_fields=True):
    """A heartbeat frame."""

    ts: Timestamp = None


WireMessage = WireUpdate | WireSnapshot | WireTrade | WireHeartbeat

#: Decodes ``bytes``, ``bytearray`` or ``memoryview`` frames; raises
#: :data:`WireError` for anything that is not one of the four Structs.
WIRE_DECODER: Final = msgspec.json.Decoder(WireMessage)
#: ``WIRE_DECODER.decode``, bound once: the hot path calls it per frame.
decode_wire: Final = WIRE_DECODER.decode
