"""Binance request signatures: HMAC-SHA256 and Ed25519 keys.

Binance signs the *signature payload* of a request: for the REST API the
query string concatenated, without a separator, with the body, every
parameter percent-encoded before signing (the spot REST API's "Request
security", "SIGNED Endpoint Examples for POST /api/v3/order"); for the
WebSocket API every parameter but ``signature``, sorted by name and written
``name=value`` joined with ``&`` (the WebSocket API's "SIGNED request
security"). This module signs a payload it is given; building the payload
is :mod:`.orders`'s.

* :class:`HmacSha256Signer`: the API's secret key is the HMAC-SHA256 key;
  the signature is the digest as lower-case hex (Binance reads it case
  insensitively), safe as is in a query.
* :class:`Ed25519Signer`: an Ed25519 private key (PKCS#8 PEM, as Binance
  asks its public half to be registered); the signature is the standard
  base64 of the 64-byte Ed25519 signature, percent-encoded where it goes in
  a query or a form body (``+``, ``/`` and ``=`` are not safe there).
  Binance recommends Ed25519 keys ("the best performance and security out
  of all supported key types").

Neither key ever appears in a ``repr``, a ``str``, an exception or a log
line: both signers print as their type and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Protocol, cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ...core.errors import ConfigError

__all__ = ["Ed25519Signer", "HmacSha256Signer", "Signer", "signer_from_environment"]

#: SHA-256's block size: HMAC pads (or first hashes) its key to it (RFC 2104).
_BLOCK: Final = 64
_INNER: Final = bytes(0x36 for _ in range(256))
_OUTER: Final = bytes(0x5C for _ in range(256))
# Base64's three characters that a query string or form body must escape.
_QUERY_ESCAPES: Final = {ord("+"): "%2B", ord("/"): "%2F", ord("="): "%3D"}


class Signer(Protocol):
    """Signs Binance signature payloads (see the module docstring)."""

    def sign(self, payload: str) -> str:
        """The signature of ``payload`` as Binance reads it in a JSON request (WebSocket API)."""

    def query_signature(self, payload: bytes) -> bytes:
        """The signature of ``payload`` (ASCII), written as it goes in a query string or body."""


class _Sha256(Protocol):
    """What :class:`HmacSha256Signer` uses of a SHA-256 object (:mod:`hashlib`'s interface)."""

    def copy(self) -> _Sha256: ...

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _builtin_sha256() -> Callable[[bytes], _Sha256]:
    """CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before), else :mod:`hashlib`'s.

    The modules :mod:`hashlib` falls back to without OpenSSL. Their state
    is a small struct, so a copy is a ``memcpy``; OpenSSL's goes through
    its provider layer (a context allocated and duplicated per copy). On
    the order path, which runs with cold CPU caches, that halves the
    signature's cost (docs/benchmarks.md). Same digests (RFC 6234; the
    tests compare with :mod:`hmac`).
    """
    for name in ("_sha2", "_sha256"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        constructor = getattr(module, "sha256", None)
        if constructor is not None:
            return cast(Callable[[bytes], _Sha256], constructor)
    return cast(Callable[[bytes], _Sha256], hashlib.sha256)


_sha256: Final = _builtin_sha256()


def _xor(key: bytes, pad: bytes) -> bytes:
    return bytes(k ^ p for k, p in zip(key, pad, strict=False))


class HmacSha256Signer:
    """HMAC-SHA256 with the API's secret key; signatures are 64 lower-case hex digits.

    ``secret`` is the secret key Binance showed when the API key was made
    (ASCII, case sensitive). The key's inner and outer padded states are
    hashed once here, so a signature costs two SHA-256 continuations
    (about 0.6 us on the development machine against 1.4 us for
    ``hmac.digest``), on CPython's own SHA-256 where it has one (see
    :func:`_builtin_sha256`); the result is HMAC exactly (RFC 2104), which
    the tests check against :mod:`hmac`. Raises ``ValueError`` for an
    empty secret.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the HMAC secret key is empty")
        try:
            key = secret.encode()
        except UnicodeEncodeError:  # undecodable bytes from the environment
            raise ValueError("the HMAC secret key is not valid text") from None
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner: _Sha256 = _sha256(_xor(key, _INNER))
        self._outer: _Sha256 = _sha256(_xor(key, _OUTER))

    def __repr__(self) -> str:
        return "HmacSha256Signer(<secret>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a signer holds a secret: it is not pickled")

    def _digest(self, payload: bytes) -> str:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def sign(self, payload: str) -> str:
        """The hex HMAC-SHA256 of ``payload`` (UTF-8). ``O(len(payload))``."""
        return self._digest(payload.encode())

    def query_signature(self, payload: bytes) -> bytes:
        """The hex HMAC-SHA256 of ``payload``: hex needs no escaping."""
        return self._digest(payload).encode()


class Ed25519Signer:
    """Ed25519 with a private key; signatures are base64 (88 characters).

    ``private_key_pem`` is the PKCS#8 PEM text of the private key
    (``-----BEGIN PRIVATE KEY-----``), ``password`` its passphrase when it
    is encrypted. Raises ``ValueError`` for a PEM that does not load (a
    wrong passphrase included) or that holds another kind of key; the
    message never carries the key. Ed25519 signing is deterministic: the
    same payload always has the same signature.
    """

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: str | bytes, password: bytes | None = None) -> None:
        data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        try:
            key = load_pem_private_key(data, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(
                "the Ed25519 private key does not load (not a PKCS#8 PEM, or a wrong passphrase)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"the private key is a {type(key).__name__}, not an Ed25519 key")
        self._key = key

    def __repr__(self) -> str:
        return "Ed25519Signer(<private key>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a signer holds a private key: it is not pickled")

    def sign(self, payload: str) -> str:
        """The base64 Ed25519 signature of ``payload`` (UTF-8), unescaped (for JSON)."""
        return base64.b64encode(self._key.sign(payload.encode())).decode("ascii")

    def query_signature(self, payload: bytes) -> bytes:
        """The base64 Ed25519 signature of ``payload``, percent-encoded for a query or body."""
        text = base64.b64encode(self._key.sign(payload)).decode("ascii")
        return text.translate(_QUERY_ESCAPES).encode("ascii")


def signer_from_environment(
    secret_env: str | None,
    private_key_env: str | None,
    environ: Mapping[str, str] | None = None,
) -> Signer:
    """The signer the environment holds: an HMAC secret, or an Ed25519 private key.

    ``secret_env`` names the variable holding the HMAC secret key;
    ``private_key_env`` the one holding the Ed25519 private key, either the
    PEM text itself or the path of a PEM file (its passphrase, if any, in
    ``<private_key_env>_PASSPHRASE``). Exactly one of the two must be set in
    the environment. Raises :class:`~trading_engine.core.errors.ConfigError`
    with one line naming the variable (never its value) otherwise.
    """
    env = os.environ if environ is None else environ
    secret = env.get(secret_env) if secret_env else None
    pem = env.get(private_key_env) if private_key_env else None
    if secret and pem:
        message = f"both {secret_env} and {private_key_env} are set: set the key of one kind"
        raise ConfigError(message, [message])
    if secret:
        if not (secret.isascii() and secret.isprintable()) or " " in secret:
            # Never the value, nor a character of it, in a message.
            message = (
                f"{secret_env}: the secret key is not printable ASCII without spaces "
                "(Binance's keys are)"
            )
            raise ConfigError(message, [message])
        return HmacSha256Signer(secret)
    if pem and private_key_env:
        if "-----BEGIN" not in pem:
            try:
                pem = Path(pem).read_text()
            except OSError as exc:
                message = f"{private_key_env}: cannot read the private key file ({exc.strerror})"
                raise ConfigError(message, [message]) from None
            except UnicodeDecodeError:  # DER, not PEM: never a byte of the key in a message
                message = f"{private_key_env}: the private key file is not PEM text"
                raise ConfigError(message, [message]) from None
        passphrase = env.get(f"{private_key_env}_PASSPHRASE")
        try:
            return Ed25519Signer(pem, passphrase.encode() if passphrase else None)
        except UnicodeEncodeError:  # undecodable bytes in the PEM or its passphrase
            message = f"{private_key_env}: the private key or its passphrase is not valid text"
            raise ConfigError(message, [message]) from None
        except ValueError as exc:
            message = f"{private_key_env}: {exc}"
            raise ConfigError(message, [message]) from None
    names = " or ".join(name for name in (secret_env, private_key_env) if name)
    message = f"no Binance signing key: set {names or 'a key variable'}"
    raise ConfigError(message, [message])
