"""Forgery campaigns against a real engine over both brokers: forged signatures, replays (exact
and altered), cross-agent and cross-pool envelopes, signatures of one agent over another's
fields, and sequence-number games. Each kind must get its one refusal code, in the reply and in
the ledger; none may be applied, burn a seq, or change the forum.

``tests/wire/test_security.py`` shows each attack once; this goes through every kind hundreds
of times, mixed, over every route a hostile pool has (its agents' topics, its batch topic, and
another pool's account).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bench import hostile as hostile_bench
from tests.faults.hostile import (
    FORGERY_OUTCOMES,
    Attacker,
    Forger,
    forgery_campaign,
    genuine_history,
)
from tests.wire.conftest import (
    forum_counts,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

CI_FORGERIES = 500
"""Per broker in the CI form (25 of each kind)."""


async def test_a_forgery_campaign_is_refused_code_by_code(attacker: Attacker) -> None:
    genuine = await genuine_history(attacker)
    counts = forum_counts(attacker.folder.db)
    before = attacker.tally.outcomes.copy()
    accepted = await forgery_campaign(attacker, Forger(attacker, genuine, seed=8), CI_FORGERIES)

    assert accepted == 0
    assert forum_counts(attacker.folder.db) == counts
    # Each forgery got its own code (checked one by one against the ledger while sending);
    # the probes after each batch were the only envelopes accepted.
    outcomes = attacker.tally.outcomes - before
    probes = outcomes.pop("ok")
    assert probes == 2 * (CI_FORGERIES // 100)
    assert outcomes == Counter(
        {code: n * CI_FORGERIES // len(FORGERY_OUTCOMES) for code, n in Counter(
            FORGERY_OUTCOMES.values()).items()}
    )  # fmt: skip
    attacker.assert_healthy()


async def test_the_hostile_benchmark_runs_in_small() -> None:
    figures = await asyncio.to_thread(hostile_bench.run, fuzz=200, forgeries=100)
    assert figures["fuzz_envelopes_total"] == 200
    assert figures["fuzz_engine_crashes"] == 0
    assert figures["forgery_envelopes_total"] == 100
    assert figures["forgery_accepted"] == 0
    assert figures["fuzz_envelopes_per_s"] > 0 and figures["forgery_envelopes_per_s"] > 0
