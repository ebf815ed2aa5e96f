"""Credential files: one JSON file per agent, mode 0600, in the run's key folder."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from moltsim.identity.signing import Signer

SECRET_MODE = 0o600


class CredentialsError(Exception):
    """A credential file is missing, unreadable, too widely readable, or malformed."""


@dataclass(frozen=True, slots=True)
class Credentials:
    handle: str
    signer: Signer
    run_id: str

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key


def credentials_path(key_dir: Path, handle: str) -> Path:
    return key_dir / f"{handle}.key.json"


def write_credentials(key_dir: Path, handle: str, run_id: str, signer: Signer) -> Path:
    """Write an agent's credential file, readable by its owner only. Never overwrites."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path(key_dir, handle)
    secret = signer.export_secret()
    data = {
        "v": 1,
        "handle": handle,
        "run_id": run_id,
        "public_key": base64.b64encode(signer.public_key).decode(),
        "secret_key": base64.b64encode(secret).decode(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    return path


def load_credentials(path: Path) -> Credentials:
    """Load a credential file, refusing one that others can read."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise CredentialsError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        data = json.loads(path.read_text())
        secret = base64.b64decode(data["secret_key"], validate=True)
        signer = Signer(Ed25519PrivateKey.from_private_bytes(secret))
        if base64.b64decode(data["public_key"]) != signer.public_key:
            raise CredentialsError(f"{path}: public key does not match the secret key")
        return Credentials(handle=data["handle"], signer=signer, run_id=data["run_id"])
    except FileNotFoundError as exc:
        raise CredentialsError(f"no credential file at {path}") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise CredentialsError(f"{path} is not a moltsim credential file ({exc})") from exc
