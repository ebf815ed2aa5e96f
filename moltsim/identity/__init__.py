"""Agent identity: Ed25519 key pairs, signed envelopes, credential files.

The run file holds public keys only. Secret keys live in credential files (mode 0600) in the
run's key folder and are loaded only by the process that acts for the agent.
"""

from moltsim.identity.credentials import Credentials, load_credentials, write_credentials
from moltsim.identity.signing import Signer, Verifier, canonical_bytes

__all__ = [
    "Credentials",
    "Signer",
    "Verifier",
    "canonical_bytes",
    "load_credentials",
    "write_credentials",
]
