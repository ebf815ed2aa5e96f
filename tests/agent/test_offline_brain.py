"""The offline brain: deterministic for a seed, always valid actions, never votes on its own
posts, and comments that are about what they answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from moltsim.agent.brains.base import MAX_ACTIONS, Decision
from moltsim.agent.brains.offline import OfflineBrain, words
from moltsim.agent.observation import Observation
from moltsim.agent.persona import load_persona
from moltsim.domain.actions import ACTION_ADAPTER, QUERY_TYPES
from tests.agent.conftest import PERSONA_FILES, persona, random_observation

DECISIONS = 50


def observations(me: str, seed: int = 7, n: int = DECISIONS) -> list[Observation]:
    rng = random.Random(seed)
    return [random_observation(rng, me, step) for step in range(1, n + 1)]


def run(brain: OfflineBrain, seen: list[Observation]) -> list[Decision]:
    # A growing agreement map, as the runtime keeps it, so following is exercised too.
    agreement: dict[str, int] = {}
    out = []
    for obs in seen:
        decision = brain.decide_now(obs, dict(agreement))
        for action in decision.actions:
            if action["type"] == "vote":
                author = next(i.author for i in obs.feed if i.post_id == action["id"])
                agreement[author] = agreement.get(author, 0) + action["value"]
        out.append(decision)
    return out


def test_same_persona_seed_and_inputs_give_the_same_actions() -> None:
    who = persona("clawsome_memes")
    seen = observations(who.handle)
    one = run(OfflineBrain(who, seed=3), seen)
    two = run(OfflineBrain(persona("clawsome_memes"), seed=3), seen)
    assert [(d.actions, d.thoughts) for d in one] == [(d.actions, d.thoughts) for d in two]
    assert sum(len(d.actions) for d in one) > DECISIONS, "a busy persona does things"


def test_a_different_seed_gives_different_actions() -> None:
    who = persona("clawsome_memes")
    seen = observations(who.handle)
    one = run(OfflineBrain(who, seed=3), seen)
    two = run(OfflineBrain(who, seed=4), seen)
    assert [d.actions for d in one] != [d.actions for d in two]


def test_copies_of_a_persona_act_differently() -> None:
    who = persona("clawsome_memes")
    seen = observations(who.handle)
    one = run(OfflineBrain(who, seed=3), seen)
    two = run(OfflineBrain(who, seed=3, handle="clawsome_memes_2"), seen)
    assert [d.actions for d in one] != [d.actions for d in two]


@pytest.mark.parametrize("path", PERSONA_FILES, ids=[p.stem for p in PERSONA_FILES])
def test_actions_always_validate(path: Path) -> None:
    who = load_persona(path)
    seen = observations(who.handle, seed=sum(map(ord, path.stem)))
    for decision in run(OfflineBrain(who, seed=11), seen):
        assert len(decision.actions) <= MAX_ACTIONS
        for action in decision.actions:
            model = ACTION_ADAPTER.validate_python(action)
            assert model.type not in QUERY_TYPES and model.type != "llm_call"
            # What goes on the wire is exactly what was validated (no extra fields).
            assert ACTION_ADAPTER.validate_python(model.model_dump(mode="json")) == model


@pytest.mark.parametrize("handle", ["quiet_quokka", "clawsome_memes", "devils_advocado"])
def test_never_votes_on_its_own_posts(handle: str) -> None:
    who = persona(handle)
    for me in (who.handle, f"{who.handle}_2"):
        seen = observations(me, seed=21)
        own = {i.post_id for obs in seen for i in obs.feed if i.author == me}
        assert len(own) > 20
        votes = [
            a["id"]
            for d in run(OfflineBrain(who, seed=5, handle=me), seen)
            for a in d.actions
            if a["type"] == "vote"
        ]
        assert len(votes) > 20
        assert not own & set(votes)


def test_comments_are_about_what_they_answer() -> None:
    who = persona("uptime_ursula")  # comments a lot
    brain = OfflineBrain(who, seed=9)
    seen = observations(who.handle, seed=33)
    on_posts = on_notes = 0
    for obs, decision in zip(seen, run(brain, seen), strict=True):
        posts = {i.post_id: i for i in obs.feed}
        notes = {n.comment_id: n for n in obs.notifications}
        for action in decision.actions:
            if action["type"] != "comment":
                continue
            body = action["body"]
            if "post_id" in action:
                item = posts[action["post_id"]]
                assert words(body) & words(f"{item.title} {item.excerpt}"), body
                on_posts += 1
            else:
                note = notes[action["parent_id"]]
                assert note.kind in ("reply", "mention")
                assert body.startswith(f"@{note.actor} ")
                assert words(body) & words(note.excerpt), body
                on_notes += 1
    assert on_posts > 10
    assert on_notes > 3


def test_follows_only_agents_it_agrees_with_and_not_twice() -> None:
    who = persona("fresh_wick")  # never contrarian, follows readily
    brain = OfflineBrain(who, seed=2)
    seen = observations(who.handle, seed=5)
    obs = seen[0]
    agreement = {"apogee_ada": 5, "moonboi_max": 1, "fresh_wick": 9}
    follows = set()
    for step in range(40):
        decision = brain.decide_now(
            Observation(obs.me, obs.now + step, obs.feed, [], obs.submolts, "", {"following": []}),
            agreement,
        )
        follows |= {a["agent"] for a in decision.actions if a["type"] == "follow"}
    assert follows == {"apogee_ada"}
    decision = brain.decide_now(
        Observation(obs.me, obs.now, obs.feed, [], obs.submolts, "", {"following": ["apogee_ada"]}),
        agreement,
    )
    assert all(a["type"] != "follow" for a in decision.actions)


@pytest.mark.parametrize("handle", ["clawsome_memes", "ten_x_tess", "moonboi_max"])
def test_posting_rate_follows_the_temperament_on_a_busy_feed(handle: str) -> None:
    who = persona(handle)
    brain = OfflineBrain(who, seed=1)
    rng = random.Random(3)
    beats = 300
    posts = 0
    for step in range(1, beats + 1):
        obs = random_observation(rng, who.handle, step, own_posts=False)
        posts += sum(a["type"] == "post" for a in brain.decide_now(obs, {}).actions)
    assert posts / beats >= 0.5 * who.temperament.post
