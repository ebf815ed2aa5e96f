"""Broker accounts of a run and the access rules both brokers enforce.

- ``engine``: every topic of the run.
- one account per pool: publish on its agents' ``act/`` topics, its ``act-batch/`` and its
  ``step/`` topic; subscribe to its agents' ``reply/`` topics, its ``reply-batch/`` topic and
  ``tick``.
- ``observer``: subscribe to ``events`` and ``tick``; publish nothing.

Passwords are random, kept in ``accounts.json`` (mode 0600) in the run's broker folder, never
in the run file.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from moltsim.wire.topics import Topics

ENGINE = "engine"
OBSERVER = "observer"
ACCOUNTS_FILE = "accounts.json"


@dataclass(frozen=True, slots=True)
class Rules:
    """Topic filters an account may publish to and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass
class Accounts:
    sim: str
    passwords: dict[str, str] = field(default_factory=dict)
    pools: dict[str, list[str]] = field(default_factory=dict)
    """Pool account name to the handles of the agents it hosts."""

    @classmethod
    def create(cls, sim: str) -> Accounts:
        accounts = cls(sim)
        accounts.passwords[ENGINE] = secrets.token_urlsafe(24)
        accounts.passwords[OBSERVER] = secrets.token_urlsafe(24)
        return accounts

    @property
    def topics(self) -> Topics:
        return Topics(self.sim)

    def add_pool(self, pool: str, agents: list[str]) -> None:
        if pool in (ENGINE, OBSERVER):
            raise ValueError(f"{pool!r} is reserved")
        self.pools.setdefault(pool, [])
        self.pools[pool].extend(a for a in agents if a not in self.pools[pool])
        self.passwords.setdefault(pool, secrets.token_urlsafe(24))

    def pool_of(self, agent: str) -> str | None:
        for pool, agents in self.pools.items():
            if agent in agents:
                return pool
        return None

    def rules(self) -> dict[str, Rules]:
        t = self.topics
        out = {
            ENGINE: Rules(publish=(t.all,), subscribe=(t.all,)),
            OBSERVER: Rules(publish=(), subscribe=(t.events, t.tick)),
        }
        for pool, agents in self.pools.items():
            out[pool] = Rules(
                publish=(t.act_batch(pool), t.step(pool), *(t.act(a) for a in agents)),
                subscribe=(t.reply_batch(pool), t.tick, *(t.reply(a) for a in agents)),
            )
        return out

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / ACCOUNTS_FILE
        data = {"sim": self.sim, "passwords": self.passwords, "pools": self.pools}
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path) -> Accounts:
        data = json.loads((folder / ACCOUNTS_FILE).read_text())
        return cls(sim=data["sim"], passwords=data["passwords"], pools=data["pools"])
