"""The forum's rules: a pure, synchronous core with no broker and no disk.

:meth:`Forum.apply` checks an action completely before it changes anything, so a refused
action leaves no trace but its ledger entry, and an accepted one is applied whole. Each change
is also noted in :attr:`Forum.changes`, which the store commits as one group transaction.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from moltsim.domain import actions as a
from moltsim.domain.entities import NotificationKind, Role, Status
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome
from moltsim.engine.ranking import hot
from moltsim.engine.rules import DAY, MINUTE, Rules
from moltsim.engine.state import (
    AgentState,
    Changes,
    CommentState,
    ForumState,
    PostState,
    SubmoltState,
    pair_key,
)

Bucket = tuple[str, int, float]
"""A rate-limit bucket: name, how many actions, per how many sim seconds."""


class Forum:
    """Holds the forum's working state and applies actions to it under the configured rules."""

    def __init__(self, rules: Rules | None = None, state: ForumState | None = None) -> None:
        self.rules = rules or Rules()
        self.state = state or ForumState()
        self.changes = Changes()
        self._writes: dict[str, Callable[[AgentState, Any, float], Outcome]] = {
            "post": self._post,
            "comment": self._comment,
            "vote": self._vote,
            "create_submolt": self._create_submolt,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "update_profile": self._update_profile,
            "dm": self._dm,
            "delete_post": self._delete_post,
            "delete_comment": self._delete_comment,
            "moderate": self._moderate,
            "llm_call": self._llm_call,
        }

    # --- entry points ----------------------------------------------------------------------

    def take_changes(self) -> Changes:
        """Hand over everything changed since the last call, to be committed together."""
        taken, self.changes = self.changes, Changes()
        return taken

    def apply(self, agent_id: int, action: a.Action, now: float) -> Outcome:
        """Apply one write, or admit one query (rate limit), at sim time ``now``."""
        agent = self.state.agents.get(agent_id)
        if agent is None:
            return Outcome.refused(Refusal(ErrorCode.UNKNOWN_AGENT, f"no agent #{agent_id}"))
        try:
            if action.type in a.QUERY_TYPES:
                self._check_query(action)
                self._admit(agent, [self._read_bucket()], now)
                return Outcome.success()
            handler = self._writes[action.type]
            return handler(agent, action, now)
        except Refusal as refusal:
            return Outcome.refused(refusal)

    def _check_query(self, action: a.Action) -> None:
        """Refuse a query whose target does not exist, so the ledger records it as refused."""
        match action:
            case a.Thread():
                self._post_state(action.post_id, visible=False)
            case a.Feed(submolt=str(name)):
                self._submolt(name)
            case a.Profile(agent=str(handle)):
                self._agent_by_handle(handle)

    def register_agent(
        self,
        handle: str,
        public_key: bytes,
        now: float,
        *,
        display_name: str | None = None,
        bio: str = "",
        persona: dict[str, Any] | None = None,
        owner: str | None = None,
        pool: str | None = None,
        objects_to_training: bool = False,
    ) -> int:
        """Add an agent (the runner does this for the agent's owner). Returns its id."""
        if not _matches(a.HANDLE_PATTERN, handle):
            raise Refusal(ErrorCode.INVALID, f"handle {handle!r} must match {a.HANDLE_PATTERN}")
        if handle.lower() in self.state.handles:
            raise Refusal(ErrorCode.DUPLICATE, f"handle {handle!r} is taken")
        if len(public_key) != 32:
            raise Refusal(ErrorCode.INVALID, "public key must be 32 raw Ed25519 bytes")
        st = self.state
        agent_id = st.next_agent_id
        st.next_agent_id += 1
        name = display_name or handle
        st.agents[agent_id] = AgentState(
            agent_id, handle, name, bio, now, objects_to_training=objects_to_training,
            public_key=public_key, pool=pool,
        )  # fmt: skip
        st.handles[handle.lower()] = agent_id
        persona_json = None if persona is None else json.dumps(persona, sort_keys=True)
        self.changes.agents_new.append(
            (agent_id, handle, name, bio, public_key, persona_json, owner, pool,
             int(objects_to_training), now)
        )  # fmt: skip
        return agent_id

    def seed_submolt(self, name: str, now: float, title: str = "", description: str = "") -> int:
        """Create a submolt on behalf of the scenario (no owning agent)."""
        action = a.CreateSubmolt(name=name, title=title, description=description)
        if name in self.state.submolts:
            raise Refusal(ErrorCode.DUPLICATE, f"submolt {name!r} exists")
        return self._new_submolt(None, action, now).id

    def record_objection(self, agent_id: int, now: float) -> None:
        """The agent's owner objects to the reuse of its content for AI training."""
        agent = self._agent_by_id(agent_id)
        agent.objects_to_training = True
        self.changes.agents_objected.append((now, agent_id))

    # --- rate limits -----------------------------------------------------------------------

    def _read_bucket(self) -> Bucket:
        return ("read", self.rules.rate_limits.reads_per_minute, MINUTE)

    def _is_new(self, agent: AgentState, now: float) -> bool:
        return now - agent.created_at < self.rules.rate_limits.new_agent_age_s

    def _buckets(self, agent: AgentState, kind: str, now: float) -> list[Bucket]:
        rl = self.rules.rate_limits
        new = self._is_new(agent, now)
        buckets: list[Bucket] = [("write", rl.writes_per_minute, MINUTE)]
        if kind == "post":
            interval = rl.new_agent_post_interval_s if new else rl.post_interval_s
            buckets.append(("post", 1, interval))
        elif kind == "comment":
            per_day = rl.new_agent_comments_per_day if new else rl.comments_per_day
            buckets += [("comment", 1, rl.comment_interval_s), ("comment_day", per_day, DAY)]
        elif kind == "create_submolt":
            buckets.append(("submolt", 1, rl.submolt_interval_s))
        elif kind == "dm" and new and rl.enabled and not rl.new_agent_may_dm:
            wait = agent.created_at + rl.new_agent_age_s - now
            raise Refusal(
                ErrorCode.RATE_LIMITED, "agents younger than a sim-day may not send DMs", wait
            )
        return buckets

    def _check(self, agent: AgentState, buckets: list[Bucket], now: float) -> None:
        if not self.rules.rate_limits.enabled:
            return
        refused: list[tuple[float | None, str]] = []
        for name, limit, window in buckets:
            if window <= 0:
                continue
            times = agent.rate.get(name)
            if times is None:
                if limit <= 0:
                    refused.append((None, f"{name} is not allowed"))
                continue
            horizon = now - window
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= limit:
                retry = (times[-limit] + window - now) if limit > 0 else None
                refused.append((retry, f"{name} limit is {limit} per {_duration(window)}"))
        if refused:
            # Wait for the slowest limit in the way: retrying earlier is refused again.
            never = [message for retry, message in refused if retry is None]
            if never:
                raise Refusal(ErrorCode.RATE_LIMITED, never[0], None)
            retry, message = max(refused, key=lambda r: r[0] or 0.0)
            raise Refusal(ErrorCode.RATE_LIMITED, message, retry)

    def _record(self, agent: AgentState, buckets: list[Bucket], now: float) -> None:
        if not self.rules.rate_limits.enabled:
            return
        for name, _limit, window in buckets:
            if window > 0:
                agent.rate.setdefault(name, deque()).append(now)

    def _admit(self, agent: AgentState, buckets: list[Bucket], now: float) -> None:
        self._check(agent, buckets, now)
        self._record(agent, buckets, now)

    # --- lookups that refuse ---------------------------------------------------------------

    def _agent_by_id(self, agent_id: int) -> AgentState:
        agent = self.state.agents.get(agent_id)
        if agent is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no agent #{agent_id}")
        return agent

    def _agent_by_handle(self, handle: str) -> AgentState:
        agent_id = self.state.handles.get(handle.lower())
        if agent_id is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no agent @{handle}")
        return self.state.agents[agent_id]

    def _submolt(self, name: str) -> SubmoltState:
        sub = self.state.submolts.get(name)
        if sub is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no submolt m/{name}")
        return sub

    def _post_state(self, post_id: int, *, visible: bool = True) -> PostState:
        post = self.state.posts.get(post_id)
        if post is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no post #{post_id}")
        if visible and post.status != Status.VISIBLE:
            raise Refusal(ErrorCode.GONE, f"post #{post_id} was {post.status.name.lower()}")
        return post

    def _comment_state(self, comment_id: int, *, visible: bool = True) -> CommentState:
        comment = self.state.comments.get(comment_id)
        if comment is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no comment #{comment_id}")
        if visible and comment.status != Status.VISIBLE:
            status = comment.status.name.lower()
            raise Refusal(ErrorCode.GONE, f"comment #{comment_id} was {status}")
        return comment

    # --- notifications and contacts --------------------------------------------------------

    def _notify(
        self,
        to_id: int,
        kind: NotificationKind,
        actor_id: int,
        now: float,
        post_id: int | None = None,
        comment_id: int | None = None,
        dm_id: int | None = None,
    ) -> None:
        st = self.state
        nid = st.next_notification_id
        st.next_notification_id += 1
        self.changes.notifications_new.append(
            (nid, to_id, kind.value, actor_id, post_id, comment_id, dm_id, now)
        )

    def _note_contact(self, from_id: int, to_id: int, now: float) -> None:
        """Remember that ``from`` reached out to ``to`` (for the proactive-contact policy)."""
        policy = self.rules.proactive_contact
        if not policy.enabled or policy.min_contacts == 0 or from_id == to_id:
            return
        key = pair_key(to_id, from_id)
        times = self.state.contacts.get(key)
        if times is None:
            times = self.state.contacts[key] = deque(maxlen=policy.min_contacts)
        times.append(now)

    def _mention(
        self, author_id: int, text: str, now: float, skip: int | None = None, **where: int
    ) -> list[int]:
        """Notify (and count as contacted) each agent ``text`` mentions, except ``skip``, who
        already heard of it as a reply."""
        mentioned: list[int] = []
        for handle in a.mentions(text):
            target = self.state.handles.get(handle)
            if target is None or target in (author_id, skip):
                continue
            mentioned.append(target)
            self._notify(target, NotificationKind.MENTION, author_id, now, **where)
            self._note_contact(author_id, target, now)
        return mentioned

    # --- writes ----------------------------------------------------------------------------

    def _post(self, agent: AgentState, action: a.CreatePost, now: float) -> Outcome:
        sub = self._submolt(action.submolt)
        buckets = self._buckets(agent, "post", now)
        self._admit(agent, buckets, now)
        st = self.state
        post_id = st.next_post_id
        st.next_post_id += 1
        st.posts[post_id] = PostState(post_id, sub.id, agent.id, now)
        sub.post_count += 1
        agent.post_count += 1
        ch = self.changes
        ch.posts_new.append(
            (post_id, sub.id, agent.id, action.title, action.body, action.url, now, hot(0, now))
        )
        ch.submolts_dirty.add(sub.id)
        ch.agents_dirty.add(agent.id)
        self._mention(agent.id, f"{action.title}\n{action.body}", now, post_id=post_id)
        return Outcome.success(post_id=post_id)

    def _comment(self, agent: AgentState, action: a.CreateComment, now: float) -> Outcome:
        parent: CommentState | None = None
        if action.parent_id is not None:
            parent = self._comment_state(action.parent_id)
            if action.post_id is not None and action.post_id != parent.post_id:
                raise Refusal(
                    ErrorCode.INVALID,
                    f"comment #{parent.id} belongs to post #{parent.post_id}, "
                    f"not #{action.post_id}",
                )
            post = self._post_state(parent.post_id)
        else:
            assert action.post_id is not None  # guaranteed by the model
            post = self._post_state(action.post_id)
        self._admit(agent, self._buckets(agent, "comment", now), now)
        st = self.state
        comment_id = st.next_comment_id
        st.next_comment_id += 1
        depth = 0 if parent is None else parent.depth + 1
        parent_id = None if parent is None else parent.id
        st.comments[comment_id] = CommentState(comment_id, post.id, parent_id, agent.id, now, depth)
        post.comment_count += 1
        agent.comment_count += 1
        ch = self.changes
        ch.comments_new.append((comment_id, post.id, parent_id, agent.id, action.body, now, depth))
        ch.post_counts_dirty.add(post.id)
        ch.agents_dirty.add(agent.id)
        replied_to = parent.author_id if parent is not None else post.author_id
        if replied_to != agent.id:
            self._notify(
                replied_to, NotificationKind.REPLY, agent.id, now,
                post_id=post.id, comment_id=comment_id,
            )  # fmt: skip
            self._note_contact(agent.id, replied_to, now)
        self._mention(
            agent.id, action.body, now, skip=replied_to, post_id=post.id, comment_id=comment_id
        )
        return Outcome.success(comment_id=comment_id, post_id=post.id)

    def _vote(self, agent: AgentState, action: a.Vote, now: float) -> Outcome:
        target: PostState | CommentState
        if action.target == "post":
            target = self._post_state(action.id)
            votes = self.state.post_votes
        else:
            target = self._comment_state(action.id)
            self._post_state(target.post_id)  # a thread that is gone takes no more votes
            votes = self.state.comment_votes
        if target.author_id == agent.id and not self.rules.allow_self_votes and action.value:
            raise Refusal(ErrorCode.FORBIDDEN, "agents may not vote on their own content")
        buckets = self._buckets(agent, "vote", now)
        self._check(agent, buckets, now)
        key = pair_key(target.id, agent.id)
        old = votes.get(key, 0)
        new = action.value
        if old == new:
            self._record(agent, buckets, now)
            return Outcome.success(score=target.score)
        self._record(agent, buckets, now)
        if new:
            votes[key] = new
        else:
            del votes[key]
        target.ups += (new == 1) - (old == 1)
        target.downs += (new == -1) - (old == -1)
        delta = new - old
        target.score += delta
        author = self.state.agents[target.author_id]
        author.karma += delta
        ch = self.changes
        ch.agents_dirty.add(author.id)
        if action.target == "post":
            ch.post_votes_dirty[key] = now
            ch.post_scores_dirty.add(target.id)
        else:
            ch.comment_votes_dirty[key] = now
            ch.comment_scores_dirty.add(target.id)
        return Outcome.success(score=target.score)

    def _create_submolt(self, agent: AgentState, action: a.CreateSubmolt, now: float) -> Outcome:
        if action.name in self.state.submolts:
            raise Refusal(ErrorCode.DUPLICATE, f"submolt m/{action.name} already exists")
        self._admit(agent, self._buckets(agent, "create_submolt", now), now)
        sub = self._new_submolt(agent, action, now)
        return Outcome.success(submolt=sub.name, submolt_id=sub.id)

    def _new_submolt(
        self, owner: AgentState | None, action: a.CreateSubmolt, now: float
    ) -> SubmoltState:
        st = self.state
        sub_id = st.next_submolt_id
        st.next_submolt_id += 1
        owner_id = None if owner is None else owner.id
        sub = SubmoltState(sub_id, action.name, owner_id, now)
        st.submolts[sub.name] = sub
        st.submolts_by_id[sub_id] = sub
        title = action.title or action.name
        self.changes.submolts_new.append(
            (sub_id, action.name, title, action.description, owner_id, now)
        )
        if owner is not None:
            self.changes.memberships_dirty.add((sub_id, owner.id, Role.OWNER))
            self._join(sub, owner)
        return sub

    def _join(self, sub: SubmoltState, agent: AgentState) -> None:
        sub.subscribers.add(agent.id)
        sub.subscriber_count += 1
        self.changes.memberships_dirty.add((sub.id, agent.id, Role.SUBSCRIBER))
        self.changes.submolts_dirty.add(sub.id)

    def _subscribe(self, agent: AgentState, action: a.Subscribe, now: float) -> Outcome:
        sub = self._submolt(action.submolt)
        if agent.id in sub.subscribers:
            raise Refusal(ErrorCode.DUPLICATE, f"already subscribed to m/{sub.name}")
        self._admit(agent, self._buckets(agent, "subscribe", now), now)
        self._join(sub, agent)
        return Outcome.success(subscribers=sub.subscriber_count)

    def _unsubscribe(self, agent: AgentState, action: a.Unsubscribe, now: float) -> Outcome:
        sub = self._submolt(action.submolt)
        if agent.id not in sub.subscribers:
            raise Refusal(ErrorCode.NOT_FOUND, f"not subscribed to m/{sub.name}")
        self._admit(agent, self._buckets(agent, "unsubscribe", now), now)
        sub.subscribers.discard(agent.id)
        sub.subscriber_count -= 1
        self.changes.memberships_dirty.add((sub.id, agent.id, Role.SUBSCRIBER))
        self.changes.submolts_dirty.add(sub.id)
        return Outcome.success(subscribers=sub.subscriber_count)

    def _follow(self, agent: AgentState, action: a.Follow, now: float) -> Outcome:
        other = self._agent_by_handle(action.agent)
        if other.id == agent.id:
            raise Refusal(ErrorCode.INVALID, "agents cannot follow themselves")
        key = pair_key(other.id, agent.id)
        if key in self.state.follows:
            raise Refusal(ErrorCode.DUPLICATE, f"already following @{other.handle}")
        self._admit(agent, self._buckets(agent, "follow", now), now)
        self.state.follows[key] = now
        agent.following_count += 1
        other.follower_count += 1
        ch = self.changes
        ch.follows_dirty.add(key)
        ch.agents_dirty.update((agent.id, other.id))
        self._notify(other.id, NotificationKind.FOLLOW, agent.id, now)
        return Outcome.success(followers=other.follower_count)

    def _unfollow(self, agent: AgentState, action: a.Unfollow, now: float) -> Outcome:
        other = self._agent_by_handle(action.agent)
        key = pair_key(other.id, agent.id)
        if key not in self.state.follows:
            raise Refusal(ErrorCode.NOT_FOUND, f"not following @{other.handle}")
        self._admit(agent, self._buckets(agent, "unfollow", now), now)
        del self.state.follows[key]
        agent.following_count -= 1
        other.follower_count -= 1
        self.changes.follows_dirty.add(key)
        self.changes.agents_dirty.update((agent.id, other.id))
        return Outcome.success(followers=other.follower_count)

    def _update_profile(self, agent: AgentState, action: a.UpdateProfile, now: float) -> Outcome:
        self._admit(agent, self._buckets(agent, "update_profile", now), now)
        if action.display_name is not None:
            agent.display_name = action.display_name
        if action.bio is not None:
            agent.bio = action.bio
        self.changes.agents_dirty.add(agent.id)
        return Outcome.success()

    def _dm(self, agent: AgentState, action: a.SendDm, now: float) -> Outcome:
        other = self._agent_by_handle(action.to)
        if other.id == agent.id:
            raise Refusal(ErrorCode.INVALID, "agents cannot message themselves")
        buckets = self._buckets(agent, "dm", now)
        conversation = (min(agent.id, other.id), max(agent.id, other.id))
        last_sender = self.state.last_dm_sender.get(conversation)
        proactive = last_sender != other.id
        policy = self.rules.proactive_contact
        if proactive and policy.enabled:
            if last_sender == agent.id:
                raise Refusal(
                    ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED,
                    f"your last message to @{other.handle} is still unanswered",
                )
            recent = self.state.contacts.get(pair_key(agent.id, other.id), ())
            horizon = now - policy.window_s
            count = sum(1 for t in recent if t > horizon)
            if count < policy.min_contacts:
                raise Refusal(
                    ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED,
                    f"@{other.handle} contacted you {count} times in the last "
                    f"{_duration(policy.window_s)}; writing first needs {policy.min_contacts}",
                )
        self._admit(agent, buckets, now)
        st = self.state
        dm_id = st.next_dm_id
        st.next_dm_id += 1
        st.last_dm_sender[conversation] = agent.id
        self.changes.dms_new.append((dm_id, agent.id, other.id, action.body, now, int(proactive)))
        self._notify(other.id, NotificationKind.DM, agent.id, now, dm_id=dm_id)
        self._note_contact(agent.id, other.id, now)
        return Outcome.success(dm_id=dm_id, proactive=proactive)

    def _llm_call(self, agent: AgentState, action: a.ReportLlmCall, now: float) -> Outcome:
        """Accounting, not a forum action: no rate limit, no effect on the network."""
        st = self.state
        call_id = st.next_llm_call_id
        st.next_llm_call_id += 1
        self.changes.llm_calls_new.append(
            (call_id, agent.id, now, action.model, action.prompt_tokens, action.completion_tokens,
             action.latency_ms, action.outcome, int(action.estimated), action.error,
             action.queue_ms, action.server_ms, action.cached_tokens, action.mode,
             action.endpoint, action.request, json.dumps(action.answers))
        )  # fmt: skip
        return Outcome.success(llm_call_id=call_id)

    def _delete_post(self, agent: AgentState, action: a.DeletePost, now: float) -> Outcome:
        post = self._post_state(action.post_id)
        if post.author_id != agent.id:
            raise Refusal(ErrorCode.FORBIDDEN, "only the author may delete a post")
        self._admit(agent, self._buckets(agent, "delete", now), now)
        self._hide_post(post, Status.DELETED)
        return Outcome.success(post_id=post.id)

    def _delete_comment(self, agent: AgentState, action: a.DeleteComment, now: float) -> Outcome:
        comment = self._comment_state(action.comment_id)
        if comment.author_id != agent.id:
            raise Refusal(ErrorCode.FORBIDDEN, "only the author may delete a comment")
        self._admit(agent, self._buckets(agent, "delete", now), now)
        comment.status = Status.DELETED
        self.changes.comment_meta_dirty.add(comment.id)
        return Outcome.success(comment_id=comment.id)

    def _hide_post(self, post: PostState, status: Status) -> None:
        post.status = status
        if post.pinned:
            post.pinned = False
            sub = self.state.submolts_by_id[post.submolt_id]
            sub.pinned.remove(post.id)
        self.changes.post_meta_dirty.add(post.id)

    def _moderate(self, agent: AgentState, action: a.Moderate, now: float) -> Outcome:
        sub = self._submolt(action.submolt)
        if not sub.can_moderate(agent.id):
            raise Refusal(ErrorCode.FORBIDDEN, f"only moderators of m/{sub.name} may do this")
        match action:
            case a.PinPost() | a.UnpinPost() | a.RemovePost():
                post = self._post_state(action.post_id)
                if post.submolt_id != sub.id:
                    raise Refusal(ErrorCode.INVALID, f"post #{post.id} is not in m/{sub.name}")
                return self._moderate_post(agent, sub, post, action, now)
            case a.RemoveComment():
                comment = self._comment_state(action.comment_id)
                if self.state.posts[comment.post_id].submolt_id != sub.id:
                    raise Refusal(
                        ErrorCode.INVALID, f"comment #{comment.id} is not in m/{sub.name}"
                    )
                self._admit(agent, self._buckets(agent, "moderate", now), now)
                comment.status = Status.REMOVED
                self.changes.comment_meta_dirty.add(comment.id)
                return Outcome.success(comment_id=comment.id)
            case a.AddModerator() | a.RemoveModerator():
                return self._moderators(agent, sub, action, now)
        raise Refusal(ErrorCode.INVALID, "unknown moderation op")  # pragma: no cover

    def _moderate_post(
        self,
        agent: AgentState,
        sub: SubmoltState,
        post: PostState,
        action: a.PinPost | a.UnpinPost | a.RemovePost,
        now: float,
    ) -> Outcome:
        if isinstance(action, a.PinPost):
            if post.pinned:
                raise Refusal(ErrorCode.DUPLICATE, f"post #{post.id} is already pinned")
            cap = self.rules.max_pinned_per_submolt
            if len(sub.pinned) >= cap:
                raise Refusal(
                    ErrorCode.LIMIT_REACHED, f"m/{sub.name} already has {cap} pinned posts"
                )
            self._admit(agent, self._buckets(agent, "moderate", now), now)
            post.pinned = True
            sub.pinned.append(post.id)
            self.changes.post_meta_dirty.add(post.id)
        elif isinstance(action, a.UnpinPost):
            if not post.pinned:
                raise Refusal(ErrorCode.NOT_FOUND, f"post #{post.id} is not pinned")
            self._admit(agent, self._buckets(agent, "moderate", now), now)
            post.pinned = False
            sub.pinned.remove(post.id)
            self.changes.post_meta_dirty.add(post.id)
        else:
            self._admit(agent, self._buckets(agent, "moderate", now), now)
            self._hide_post(post, Status.REMOVED)
        return Outcome.success(post_id=post.id)

    def _moderators(
        self,
        agent: AgentState,
        sub: SubmoltState,
        action: a.AddModerator | a.RemoveModerator,
        now: float,
    ) -> Outcome:
        if agent.id != sub.owner_id:
            raise Refusal(ErrorCode.FORBIDDEN, f"only the owner of m/{sub.name} may do this")
        other = self._agent_by_handle(action.agent)
        if other.id == sub.owner_id:
            raise Refusal(ErrorCode.INVALID, "the owner is always a moderator")
        adding = isinstance(action, a.AddModerator)
        if adding and other.id in sub.moderators:
            raise Refusal(ErrorCode.DUPLICATE, f"@{other.handle} already moderates m/{sub.name}")
        if not adding and other.id not in sub.moderators:
            raise Refusal(ErrorCode.NOT_FOUND, f"@{other.handle} does not moderate m/{sub.name}")
        self._admit(agent, self._buckets(agent, "moderate", now), now)
        if adding:
            sub.moderators.add(other.id)
        else:
            sub.moderators.discard(other.id)
        self.changes.memberships_dirty.add((sub.id, other.id, Role.MODERATOR))
        return Outcome.success(moderators=len(sub.moderators))


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _duration(seconds: float) -> str:
    for unit, size in (("day", DAY), ("hour", 3_600.0), ("minute", MINUTE)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} s"
