"""The envelope model: exact types, because the signature covers the JSON as sent."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from moltsim.domain.envelope import Envelope
from moltsim.identity.signing import Signer

FIELDS = {"v": 1, "agent": "alice", "seq": 1, "action": {"type": "feed"}}


def test_a_signed_envelope_parses() -> None:
    signed = {**FIELDS, "sig": Signer.generate().sign(FIELDS)}
    assert Envelope.model_validate_json(json.dumps(signed)).v == 1


@pytest.mark.parametrize("v", [True, 1.0, "1", 2, 0])
def test_v_must_be_the_integer_one(v: object) -> None:
    """``true`` equals 1 in Python: a ``Literal[1]`` alone accepted it, and the engine then
    checked the signature over ``"v":1``, bytes the sender never sent (found by fuzzing)."""
    signed = {**FIELDS, "sig": Signer.generate().sign(FIELDS)}
    with pytest.raises(ValidationError, match="v"):
        Envelope.model_validate_json(json.dumps({**signed, "v": v}))
    with pytest.raises(ValidationError, match="v"):
        Envelope.model_validate({**signed, "v": v})
