"""Signing and verifying envelopes: Ed25519 over the canonical JSON of the unsigned fields."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


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

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()[:16]}…)"


class Verifier:
    """Verifies signatures against registered public keys (cached as key objects)."""

    def __init__(self) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}

    def add(self, agent: str, public_key: bytes) -> None:
        self._keys[agent] = Ed25519PublicKey.from_public_bytes(public_key)

    def __contains__(self, agent: str) -> bool:
        return agent in self._keys

    def verify(self, agent: str, fields: dict[str, Any], sig: str) -> bool:
        key = self._keys.get(agent)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(sig, validate=True), canonical_bytes(fields))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
