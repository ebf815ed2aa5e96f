"""Making forum data through the real engine, by handle, at given sim times."""

from __future__ import annotations

from typing import Any, Literal

from moltsim.domain import actions as a
from moltsim.engine.service import Engine


class EngineWriter:
    """Submits actions for registered agents and asserts each was accepted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.agents: dict[str, int] = {}
        """Handle to agent id, filled in by the caller as it registers agents."""

    async def do(self, who: str, action: a.Action, at: float) -> dict[str, Any]:
        outcome = await self.engine.submit(self.agents[who], action, at)
        assert outcome.ok, (action, outcome.code, outcome.message)
        return outcome.data

    async def post(self, who: str, sub: str, title: str, at: float, body: str = "") -> int:
        data = await self.do(who, a.CreatePost(submolt=sub, title=title, body=body), at)
        return int(data["post_id"])

    async def comment(
        self,
        who: str,
        body: str,
        at: float,
        *,
        post_id: int | None = None,
        parent_id: int | None = None,
    ) -> int:
        action = a.CreateComment(post_id=post_id, parent_id=parent_id, body=body)
        return int((await self.do(who, action, at))["comment_id"])

    async def vote(
        self,
        who: str,
        target: Literal["post", "comment"],
        target_id: int,
        at: float,
        value: Literal[1, -1, 0] = 1,
    ) -> None:
        await self.do(who, a.Vote(target=target, id=target_id, value=value), at)
