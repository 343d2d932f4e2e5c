"""Request security as the venue documents it: API keys, signatures, timing.

Pure: the clock is passed in. An API key is sent in the ``X-MBX-APIKEY``
header (REST) or the ``apiKey`` parameter (WebSocket API). ``SIGNED``
requests carry ``timestamp`` (milliseconds, or microseconds), an optional
``recvWindow`` (milliseconds, at most 60000, default 5000) and
``signature``:

* an HMAC key signs with HMAC-SHA256 keyed by its secret; the signature is
  hex, compared without regard to case;
* an Ed25519 key signs with its private key; the signature is base64
  (percent-encoded in a query string or form body), compared exactly.

The signed payload of a REST request is its query string concatenated,
without a separator, with its form body, each as sent (percent-encoded),
less the ``signature`` parameter. The payload of a WebSocket API request is
its parameters but ``signature``, sorted by name, written ``name=value``
joined by ``&``, not percent-encoded.

A request is in time when ``timestamp < now + 1000`` and ``now - timestamp
<= recvWindow`` (milliseconds); otherwise it is refused with ``-1021``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote

from .errors import VenueError

__all__ = [
    "ApiKeys",
    "check_timing",
    "load_ed25519_public_key",
    "rest_payload",
    "websocket_payload",
]

#: The venue's API keys are 64 letters and digits; anything else is "format invalid".
_KEY_FORMAT: Final = re.compile(r"[A-Za-z0-9]{1,128}")
#: The largest recvWindow the venue accepts, in milliseconds.
MAX_RECV_WINDOW_MS: Final = 60_000
DEFAULT_RECV_WINDOW_MS: Final = 5_000


class Ed25519Verifier(Protocol):
    """An Ed25519 public key (``cryptography``'s ``Ed25519PublicKey``)."""

    def verify(self, signature: bytes, data: bytes) -> None: ...


def load_ed25519_public_key(path: str) -> Ed25519Verifier:
    """The Ed25519 public key in the PEM file ``path``.

    Raises ValueError naming the file when it cannot be read, is not PEM, or
    is not an Ed25519 key; needs the ``cryptography`` package.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:  # pragma: no cover - cryptography comes with the test extra
        raise ValueError(f"{path}: Ed25519 keys need the cryptography package") from exc
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


@dataclass
class ApiKeys:
    """The account's API keys: HMAC keys with their secrets, Ed25519 keys with their public keys."""

    hmac: dict[str, str] = field(default_factory=dict)
    ed25519: dict[str, Ed25519Verifier] = field(default_factory=dict)

    def check_key(self, api_key: str | None) -> str:
        """The key if the venue knows it; raises ``-2014`` (malformed) or ``-2015`` (unknown)."""
        if api_key is not None and (api_key in self.hmac or api_key in self.ed25519):
            return api_key
        if not api_key or not _KEY_FORMAT.fullmatch(api_key):
            raise VenueError(401, -2014, "API-key format invalid.")
        raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")

    def is_ed25519(self, api_key: str) -> bool:
        return api_key in self.ed25519

    def verify(self, api_key: str, payload: bytes, signature: str) -> bool:
        """Whether ``signature`` signs ``payload`` with ``api_key``'s key (a known key)."""
        if not signature.isascii():
            # Neither hex nor base64; compare_digest refuses to compare such text.
            return False
        secret = self.hmac.get(api_key)
        if secret is not None:
            expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        public = self.ed25519.get(api_key)
        if public is None:
            return False
        try:
            raw = base64.b64decode(signature, validate=True)
            public.verify(raw, payload)
        except (binascii.Error, ValueError):
            return False
        except Exception as exc:  # cryptography's InvalidSignature, imported lazily
            if type(exc).__name__ == "InvalidSignature":
                return False
            raise
        return True


def _without_signature(text: str) -> tuple[str, list[str]]:
    """``text`` (``a=1&b=2``) less its ``signature=`` pairs, and those pairs' raw values."""
    kept: list[str] = []
    signatures: list[str] = []
    for pair in text.split("&") if text else ():
        if pair.startswith("signature="):
            signatures.append(pair[len("signature=") :])
        else:
            kept.append(pair)
    return "&".join(kept), signatures


def rest_payload(query: str, body: str) -> tuple[bytes, str]:
    """The signed payload of a REST request and its signature (percent-decoded).

    ``query`` and ``body`` are as received (percent-encoded). Raises
    ``-1102`` when there is no signature and ``-1101`` when there are several.
    """
    query_rest, in_query = _without_signature(query)
    body_rest, in_body = _without_signature(body)
    found = in_query + in_body
    if not found or not found[0]:
        raise VenueError(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        )
    if len(in_query) > 1 or len(in_body) > 1:
        raise VenueError(400, -1101, "Duplicate values for a parameter detected.")
    # A parameter in both places: the query string's is used.
    signature = unquote(in_query[0] if in_query else in_body[0])
    return (query_rest + body_rest).encode(), signature


def websocket_payload(params: Mapping[str, object]) -> bytes:
    """The signed payload of a WebSocket API request: its parameters but ``signature``, sorted."""
    parts = []
    for name in sorted(params):
        if name == "signature":
            continue
        value = params[name]
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        parts.append(f"{name}={text}")
    return "&".join(parts).encode()


def _number(name: str, text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,3})?", text):
        raise VenueError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return float(text) if "." in text else int(text)


def check_timing(timestamp: str | None, recv_window: str | None, now_ms: int) -> None:
    """Refuse a request out of its receive window (``-1021``) or with bad timing parameters.

    ``timestamp`` is milliseconds (13 digits) or microseconds (16 digits);
    ``recv_window`` milliseconds with up to three decimals, at most 60000.
    """
    if not timestamp:
        raise VenueError(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        )
    stamp = _number("timestamp", timestamp)
    if not isinstance(stamp, int):
        raise VenueError(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        )
    stamp_ms = stamp / 1000 if stamp >= 10**14 else stamp
    window: float = DEFAULT_RECV_WINDOW_MS
    if recv_window is not None:
        window = _number("recvWindow", recv_window)
        if window > MAX_RECV_WINDOW_MS:
            raise VenueError(400, -1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    if stamp_ms >= now_ms + 1000:
        raise VenueError(
            400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if now_ms - stamp_ms > window:
        raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
