"""Signing and verifying envelopes: Ed25519 over the canonical JSON of the unsigned fields."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes that are signed: keys sorted, no whitespace, UTF-8."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    """Signs envelopes for one agent. Holds the secret key; never log or serialise it."""

    __slots__ = ("_key", "public_key")

    def __init__(self, secret_key: Ed25519PrivateKey) -> None:
        self._key = secret_key
        self.public_key = secret_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def export_secret(self) -> bytes:
        """The raw secret key, for writing a credential file; nothing else should call this."""
        return self._key.private_bytes_raw()

    def sign(self, fields: dict[str, Any]) -> str:
        return base64.b64encode(self._key.sign(canonical_bytes(fields))).decode()

    def envelope(self, agent: str, seq: int, action: dict[str, Any]) -> dict[str, Any]:
        """A complete signed envelope, ready to be sent as JSON."""
        fields: dict[str, Any] = {"v": 1, "agent": agent, "seq": seq, "action": action}
        fields["sig"] = self.sign(fields)
        return fields

    def envelope_bytes(self, agent: str, seq: int, action: dict[str, Any]) -> bytes:
        """The signed envelope as JSON bytes: the canonical bytes with ``sig`` appended, so the
        fields are serialised once."""
        signed = canonical_bytes({"v": 1, "agent": agent, "seq": seq, "action": action})
        sig = base64.b64encode(self._key.sign(signed))
        return signed[:-1] + b',"sig":"' + sig + b'"}'

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()[:16]}…)"


def verify_key(public_key: bytes) -> VerifyKey:
    """A key object for fast verification.

    Keys are made and used for signing with ``cryptography``; verification, the engine's hot
    path, goes through libsodium (PyNaCl), which checks Ed25519 signatures about twice as fast.
    """
    return VerifyKey(public_key)


def verify(key: VerifyKey, fields: dict[str, Any], sig: str) -> bool:
    """Whether ``sig`` (base64) signs the canonical JSON of ``fields`` under ``key``."""
    try:
        key.verify(canonical_bytes(fields), base64.b64decode(sig, validate=True))
    except (BadSignatureError, binascii.Error, ValueError):
        return False
    return True


class Verifier:
    """Verifies signatures against registered public keys (cached as key objects)."""

    def __init__(self) -> None:
        self._keys: dict[str, VerifyKey] = {}

    def add(self, agent: str, public_key: bytes) -> None:
        self._keys[agent] = verify_key(public_key)

    def __contains__(self, agent: str) -> bool:
        return agent in self._keys

    def verify(self, agent: str, fields: dict[str, Any], sig: str) -> bool:
        key = self._keys.get(agent)
        return key is not None and verify(key, fields, sig)
