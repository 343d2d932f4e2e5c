"""Kraken's WebSocket v2 book checksum: CRC32 of the top 10 levels of each side.

Kraken documents it in "Book checksum (WebSocket v2)"
(https://docs.kraken.com/exchange/guides/websockets/book-checksum-v2): for each of
the 10 best asks (lowest price first) and then each of the 10 best bids
(highest first), write the price and then the quantity as decimal text
at the pair's precision, remove the decimal point and the leading zeros,
concatenate everything and take the CRC32 (an unsigned 32-bit integer).

The v2 API sends prices and quantities as JSON numbers; they are read as
:class:`~decimal.Decimal` from their text (never as floats) and written
out at the pair's ``price_precision`` / ``qty_precision`` from the
``instrument`` channel, since a number's text may drop trailing zeros.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

__all__ = ["CHECKSUM_LEVELS", "checksum", "field"]

#: Levels per side the checksum covers, whatever the subscribed depth.
CHECKSUM_LEVELS: Final = 10

_ONE: Final = Decimal(1)


def field(value: Decimal, places: int | None) -> str:
    """``value`` as the checksum writes it: at ``places`` decimals, no point, no leading zeros.

    ``places`` None (precision unknown) keeps the digits the venue sent.
    A value with more decimals than ``places`` keeps them all (rounding
    would hide a wrong value; the checksum then disagrees, as it should).
    """
    if places is not None and -value.as_tuple().exponent < places:  # type: ignore[operator]
        value = value.quantize(_ONE.scaleb(-places))
    return format(value, "f").replace(".", "").lstrip("0")


def checksum(asks: Iterable[str], bids: Iterable[str]) -> int:
    """CRC32 of the concatenated per-level fields (price field + quantity field),
    asks best first then bids best first, each already cut to :data:`CHECKSUM_LEVELS`."""
    return zlib.crc32(("".join(asks) + "".join(bids)).encode("ascii"))
