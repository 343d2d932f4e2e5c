"""Binance signatures: the documented examples, HMAC exactly, Ed25519 verified, keys hidden."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
from pathlib import Path
from urllib.parse import unquote

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.core.errors import ConfigError
from trading_engine.venues.binance.signing import (
    Ed25519Signer,
    HmacSha256Signer,
    signer_from_environment,
)

#: The example key pair of Binance's REST and WebSocket API documentation.
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def ed25519_pem(password: bytes | None = None) -> tuple[str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    return pem, key


# REST "SIGNED Endpoint Examples for POST /api/v3/order" (HMAC keys).
@pytest.mark.parametrize(
    ("payload", "signature"),
    [
        (
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
            "&recvWindow=5000&timestamp=1499827319559",
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
        ),
        # The symbol of the fullwidth digits one to six, percent-encoded before signing.
        (
            "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY"
            "&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
            "&timestamp=1499827319559",
            "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
        ),
        # Query string and body concatenated without a separator ("GTCquantity").
        (
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1"
            "&recvWindow=5000&timestamp=1499827319559",
            "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        ),
        # WebSocket API "SIGNED request example (HMAC)": params sorted by name.
        (
            f"apiKey={API_KEY}&newOrderRespType=ACK&price=52000.00&quantity=0.01000000"
            "&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532"
            "&type=LIMIT",
            "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a",
        ),
    ],
)
def test_hmac_signs_binances_documented_examples(payload: str, signature: str) -> None:
    signer = HmacSha256Signer(SECRET)
    assert signer.sign(payload) == signature
    assert signer.query_signature(payload.encode()) == signature.encode()


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=500))
def test_hmac_is_rfc_2104_hmac_for_any_key_and_payload(key: bytes, payload: bytes) -> None:
    # Keys longer than the 64-byte block are hashed first: both branches.
    secret = key.hex()
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    assert HmacSha256Signer(secret).query_signature(payload) == expected.encode()


def test_the_signer_hashes_with_cpythons_own_sha256_else_hashlibs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    from trading_engine.venues.binance import signing

    # CPython ships _sha2 (3.12+) or _sha256 (3.11): the order path's cheaper copies.
    assert signing._builtin_sha256() is not hashlib.sha256

    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert signing._builtin_sha256() is hashlib.sha256


def test_a_signer_is_reusable_the_padded_key_is_never_consumed() -> None:
    signer = HmacSha256Signer(SECRET)
    first = signer.sign("a=1")
    signer.sign("b=2")
    assert signer.sign("a=1") == first


def test_ed25519_signatures_verify_with_the_public_key() -> None:
    pem, key = ed25519_pem()
    signer = Ed25519Signer(pem)
    payload = "timestamp=1668481559918&symbol=BTCUSDT&side=SELL&type=LIMIT&quantity=1&price=0.2"
    signature = signer.sign(payload)
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 64
    key.public_key().verify(raw, payload.encode())
    with pytest.raises(InvalidSignature):
        key.public_key().verify(raw, payload.encode() + b"&x=1")
    # In a query the base64 is percent-encoded: no '+', '/' or '=' left.
    in_query = signer.query_signature(payload.encode()).decode()
    assert not set(in_query) & set("+/=")
    assert unquote(in_query) == signature
    # Deterministic: the same payload, the same signature.
    assert signer.sign(payload) == signature


def test_an_encrypted_key_loads_with_its_passphrase_only() -> None:
    pem, key = ed25519_pem(b"hunter2")
    signer = Ed25519Signer(pem, b"hunter2")
    key.public_key().verify(base64.b64decode(signer.sign("a=1")), b"a=1")
    with pytest.raises(ValueError, match="does not load") as caught:
        Ed25519Signer(pem, b"wrong")
    assert "PRIVATE KEY" not in str(caught.value)


def test_a_key_of_another_kind_or_no_key_is_refused() -> None:
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        Ed25519Signer(rsa_pem)
    with pytest.raises(ValueError, match="does not load"):
        Ed25519Signer("not a key")
    with pytest.raises(ValueError, match="empty"):
        HmacSha256Signer("")


def test_keys_never_show_in_repr_str_or_pickle() -> None:
    pem, _ = ed25519_pem()
    for signer, secret in ((HmacSha256Signer(SECRET), SECRET), (Ed25519Signer(pem), pem)):
        for text in (repr(signer), str(signer), f"{signer}"):
            assert secret not in text
            assert secret[:16] not in text
        with pytest.raises(TypeError, match="not pickled"):
            pickle.dumps(signer)


@pytest.mark.parametrize("secret", ["abc\udcffdef", "abc\u00e9def", "abc\ndef", "abc "])
def test_a_secret_that_is_not_printable_ascii_is_a_configuration_error(secret: str) -> None:
    # An undecodable byte in the environment arrives as a surrogate: no traceback,
    # and nothing of the value in the message.
    with pytest.raises(ConfigError) as raised:
        signer_from_environment("BINANCE_SECRET", None, {"BINANCE_SECRET": secret})
    assert str(raised.value) == (
        "BINANCE_SECRET: the secret key is not printable ASCII without spaces (Binance's keys are)"
    )
    with pytest.raises(ValueError, match="not valid text"):
        HmacSha256Signer("abc\udcffdef")


def test_a_private_key_file_that_is_not_pem_text_names_no_byte_of_it(tmp_path: Path) -> None:
    der = tmp_path / "key.der"
    der.write_bytes(bytes.fromhex("302e020100300506032b657004220420") + b"\xd4\x60" * 16)
    with pytest.raises(ConfigError) as raised:
        signer_from_environment(None, "BINANCE_KEY", {"BINANCE_KEY": str(der)})
    assert str(raised.value) == "BINANCE_KEY: the private key file is not PEM text"


def test_the_environment_names_the_signer(tmp_path: Path) -> None:
    signer = signer_from_environment("BINANCE_SECRET", "BINANCE_KEY", {"BINANCE_SECRET": SECRET})
    assert isinstance(signer, HmacSha256Signer)
    pem, key = ed25519_pem()
    signer = signer_from_environment("BINANCE_SECRET", "BINANCE_KEY", {"BINANCE_KEY": pem})
    assert isinstance(signer, Ed25519Signer)
    path = tmp_path / "key.pem"
    path.write_text(pem)
    signer = signer_from_environment(None, "BINANCE_KEY", {"BINANCE_KEY": str(path)})
    key.public_key().verify(base64.b64decode(signer.sign("a=1")), b"a=1")
    encrypted, _ = ed25519_pem(b"pw")
    environ = {"BINANCE_KEY": encrypted, "BINANCE_KEY_PASSPHRASE": "pw"}
    assert isinstance(signer_from_environment(None, "BINANCE_KEY", environ), Ed25519Signer)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no Binance signing key: set BINANCE_SECRET or BINANCE_KEY"),
        ({"BINANCE_SECRET": SECRET, "BINANCE_KEY": "x"}, "both BINANCE_SECRET and BINANCE_KEY"),
        ({"BINANCE_KEY": "/nonexistent/key.pem"}, "BINANCE_KEY: cannot read the private key"),
        ({"BINANCE_KEY": "-----BEGIN PRIVATE KEY-----\nxx\n"}, "BINANCE_KEY: the Ed25519"),
    ],
)
def test_a_missing_or_bad_key_is_one_line_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        signer_from_environment("BINANCE_SECRET", "BINANCE_KEY", environ)
    (problem,) = caught.value.problems
    assert problem.startswith(message)
    assert "\n" not in problem
    assert SECRET not in problem
