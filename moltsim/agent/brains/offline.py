"""The offline brain: seeded, deterministic, no network.

It reads what the agent sees through the persona: it votes by affinity (shared interests,
past agreement) and temperament (contrarians downvote more), replies to threads near its
interests and to those who replied to it, posts in the submolts it likes, rarely founds one,
and follows agents it keeps agreeing with. Text comes from a small word-level Markov chain
over the persona's own phrases and sample posts, pointed at what it is replying to.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import Any, ClassVar

from moltsim.agent.brains.base import MAX_ACTIONS, Decision
from moltsim.agent.observation import FeedItem, NoteItem, Observation
from moltsim.agent.persona import Persona

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "was",
        "be",
        "it",
        "this",
        "that",
        "i",
        "you",
        "we",
        "they",
        "my",
        "your",
        "our",
        "at",
        "as",
        "by",
        "from",
        "not",
        "but",
        "so",
        "if",
        "do",
        "does",
        "just",
        "about",
        "what",
        "how",
        "why",
        "when",
        "who",
    ]
)


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS}


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:30].strip("-")
    return name if len(name) >= 2 else f"{name}-club"


class Markov:
    """Order-1 word chain over a persona's own writing."""

    def __init__(self, texts: list[str]) -> None:
        self.next: dict[str, list[str]] = defaultdict(list)
        self.starts: list[str] = []
        for text in texts:
            tokens = text.split()
            if not tokens:
                continue
            self.starts.append(tokens[0])
            for a, b in zip(tokens, [*tokens[1:], ""], strict=True):
                self.next[a].append(b)

    def sentence(self, rng: random.Random, max_words: int = 24) -> str:
        if not self.starts:
            return "Interesting."
        word = rng.choice(self.starts)
        out = [word]
        while len(out) < max_words:
            choices = self.next.get(word)
            if not choices:
                break
            word = rng.choice(choices)
            if not word:
                break
            out.append(word)
        text = " ".join(out)
        return text if text[-1] in ".!?" else text + "."


class Voice:
    """What the offline brain derives from a persona, built once and shared by its copies."""

    _cache: ClassVar[dict[int, tuple[Persona, Voice]]] = {}

    def __init__(self, persona: Persona) -> None:
        self.interests = frozenset().union(*(words(i) for i in persona.interests))
        samples = [s.replace("\n", " ") for s in persona.voice.sample_posts]
        self.chain = Markov([*persona.voice.phrases, *samples])

    @classmethod
    def of(cls, persona: Persona) -> Voice:
        cached = cls._cache.get(id(persona))
        if cached is None or cached[0] is not persona:
            cached = cls._cache[id(persona)] = (persona, cls(persona))
        return cached[1]


class OfflineBrain:
    __slots__ = ("chain", "decisions", "handle", "interests", "persona", "seed")

    def __init__(self, persona: Persona, seed: int, handle: str | None = None) -> None:
        self.persona = persona
        self.seed = seed
        self.handle = handle or persona.handle
        voice = Voice.of(persona)
        self.interests = voice.interests
        self.chain = voice.chain
        self.decisions = 0

    def _rng(self, observation: Observation) -> random.Random:
        # A string seed is hashed with SHA-512: stable across processes and Python runs.
        return random.Random(f"{self.seed}:{self.handle}:{self.decisions}:{observation.now:.3f}")

    def affinity(self, item: FeedItem, agreement: dict[str, int]) -> float:
        shared = len(self.interests & words(f"{item.title} {item.excerpt} {item.submolt}"))
        return shared + 0.5 * max(-2, min(agreement.get(item.author, 0), 4))

    async def decide(self, observation: Observation) -> Decision:
        return self.decide_now(observation, {})

    def decide_now(self, observation: Observation, agreement: dict[str, int]) -> Decision:
        rng = self._rng(observation)
        self.decisions += 1
        t = self.persona.temperament
        actions: list[dict[str, Any]] = []
        thoughts: list[str] = []

        # Own initiatives first, so that a busy feed cannot crowd them out.
        if rng.random() < t.post:
            actions.append(self._post(observation, rng))
            thoughts.append("writing a post")
        if rng.random() < t.found_submolt:
            interest = rng.choice(self.persona.interests)
            name = slug(interest)
            if name not in observation.submolts:
                about = f"For agents who care about {interest}."
                actions.append({"type": "create_submolt", "name": name,
                                "title": interest.title()[:100], "description": about})  # fmt: skip
                thoughts.append(f"founding m/{name}")
        friends = sorted(a for a, n in agreement.items() if n >= 3)
        following = set(observation.extra.get("following", ()))
        candidates = [a for a in friends if a not in following and a != self.handle]
        if candidates and rng.random() < t.follow:
            who = rng.choice(candidates)
            actions.append({"type": "follow", "agent": who})
            thoughts.append(f"following @{who}")

        written_to: set[str] = set()
        for note in observation.notifications:
            if len(actions) >= MAX_ACTIONS:
                break
            if note.kind == "dm" and note.actor not in written_to and rng.random() < t.comment:
                written_to.add(note.actor)
                actions.append({"type": "dm", "to": note.actor,
                                "body": self._dm_text(note, rng)})  # fmt: skip
                thoughts.append(f"answering @{note.actor}'s message")
            elif note.kind in ("reply", "mention") and note.comment_id:
                if rng.random() < t.comment:
                    actions.append(self._reply_to_note(note, rng))
                    thoughts.append(f"answering @{note.actor}")
                # Someone it agrees with keeps talking to it: perhaps write to them directly
                # (the proactive-contact policy decides whether that is allowed yet).
                friendly = agreement.get(note.actor, 0) >= 2
                if (
                    friendly
                    and note.actor not in written_to
                    and len(actions) < MAX_ACTIONS
                    and rng.random() < t.follow / 2
                ):
                    written_to.add(note.actor)
                    actions.append({"type": "dm", "to": note.actor,
                                    "body": self._dm_text(note, rng)})  # fmt: skip
                    thoughts.append(f"writing to @{note.actor}")

        for item in observation.feed:
            if len(actions) >= MAX_ACTIONS:
                break
            if item.author == self.handle:
                continue
            fit = self.affinity(item, agreement)
            if rng.random() < t.vote:
                disagree = rng.random() < t.contrarian * (1.5 if fit <= 0 else 0.5)
                value = -1 if disagree else 1
                actions.append({"type": "vote", "target": "post", "id": item.post_id,
                                "value": value})  # fmt: skip
            chance = t.comment * (1.0 if fit > 0 else 0.25)
            if len(actions) < MAX_ACTIONS and rng.random() < chance:
                actions.append(self._comment_on(item, rng, fit))
                thoughts.append(f"replying to '{item.title}'")
        return Decision(actions[:MAX_ACTIONS], "; ".join(thoughts))

    # --- text ---------------------------------------------------------------------------------

    def _keyword(self, text: str, rng: random.Random) -> str | None:
        found = sorted(words(text) & self.interests) or sorted(words(text))
        return rng.choice(found) if found else None

    def _comment_on(self, item: FeedItem, rng: random.Random, fit: float) -> dict[str, Any]:
        keyword = self._keyword(f"{item.title} {item.excerpt}", rng)
        opener = rng.choice(self.persona.voice.phrases)
        if keyword and fit > 0:
            lead = f"On {keyword}: {opener}"
        elif keyword:
            lead = f"Not my usual corner, but {keyword} caught my eye. {opener}"
        else:
            lead = opener
        body = f"{lead} {self.chain.sentence(rng)}"
        if rng.random() < 0.3:
            body = f"@{item.author} {body}"
        return {"type": "comment", "post_id": item.post_id, "body": body[:2_000]}

    def _reply_to_note(self, note: NoteItem, rng: random.Random) -> dict[str, Any]:
        keyword = self._keyword(note.excerpt, rng)
        about = f" about {keyword}" if keyword else ""
        body = f"@{note.actor} thanks for the reply{about}. {self.chain.sentence(rng)}"
        return {"type": "comment", "parent_id": note.comment_id, "body": body[:2_000]}

    def _dm_text(self, note: NoteItem, rng: random.Random) -> str:
        keyword = self._keyword(note.excerpt, rng)
        about = f" about {keyword}" if keyword else ""
        return f"Hi @{note.actor}, more on what you said{about}: {self.chain.sentence(rng)}"[:2_000]

    def _post(self, observation: Observation, rng: random.Random) -> dict[str, Any]:
        liked = [s for s in self.persona.submolts if s in observation.submolts]
        submolt = rng.choice(liked or observation.submolts or ["general"])
        if rng.random() < 0.3:
            sample = rng.choice(self.persona.voice.sample_posts)
            title, _, body = sample.partition("\n")
            return {"type": "post", "submolt": submolt, "title": title.strip()[:300] or "Hello",
                    "body": body.strip()[:40_000]}  # fmt: skip
        interest = rng.choice(self.persona.interests)
        title = f"{interest.capitalize()}: {self.chain.sentence(rng, 10).rstrip('.!?')}"
        body = " ".join(self.chain.sentence(rng) for _ in range(rng.randint(2, 5)))
        return {"type": "post", "submolt": submolt, "title": title[:300], "body": body[:40_000]}
