"""The records of each entity that an export keeps, in a stable order, from one snapshot.

Filters: ``--since``/``--until`` keep records created in ``[since, until)`` (votes by the time
they were last cast, the ledger by its sim time); agents and submolts are a directory the
other records refer to and are always kept whole. ``--submolt`` keeps that submolt, its posts,
their comments, the votes on them, and the ledger rows about them; follows and DMs belong to no
submolt and are left out. Consent (:mod:`moltsim.export.consent`) applies after the filters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

from moltsim.export.consent import Consent
from moltsim.export.options import ExportError, ExportOptions
from moltsim.export.records import REDACTED, STATUS, Record, follow_id, vote_id
from moltsim.export.simtime import iso
from moltsim.export.snapshot import Snapshot

SUBMOLT_ACTIONS = frozenset({"post", "subscribe", "unsubscribe", "moderate"})
"""Ledger types whose payload names the submolt they concern (``create_submolt`` by ``name``)."""


class Selection:
    """What to export from ``snapshot`` under ``options``; consent decisions are tallied."""

    def __init__(self, snapshot: Snapshot, options: ExportOptions) -> None:
        self.snap = snapshot
        self.options = options
        self.consent = Consent(options.purpose, snapshot.objectors)
        self.handles = snapshot.handles
        self.submolt_names: dict[int, str] = dict(snapshot.rows("SELECT id, name FROM submolts"))
        self.submolt_id: int | None = None
        if options.submolt is not None:
            found = [i for i, name in self.submolt_names.items() if name == options.submolt]
            if not found:
                known = ", ".join(sorted(self.submolt_names.values())) or "none"
                raise ExportError(
                    f"no submolt {options.submolt!r} in this run (there are: {known})"
                )
            self.submolt_id = found[0]
        self._tombstone_posts: set[int] = set()
        self._tombstone_comments: set[int] = set()
        self._left_out_posts: set[int] = set()
        self._left_out_comments: set[int] = set()
        if self.consent.active:
            self._plan_tombstones()
        self._submolt_posts: set[int] | None = None
        self._submolt_comments: set[int] | None = None

    # --- filters ------------------------------------------------------------------------------

    def _when(self, column: str) -> tuple[str, tuple[Any, ...]]:
        clauses, params = [], []
        if self.options.since is not None:
            clauses.append(f"{column} >= ?")
            params.append(self.options.since)
        if self.options.until is not None:
            clauses.append(f"{column} < ?")
            params.append(self.options.until)
        return " AND ".join(clauses), tuple(params)

    def _where(
        self, column: str, *extra: tuple[str, tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        parts = [self._when(column), *extra]
        sql = " AND ".join(f"({s})" for s, _ in parts if s)
        params = tuple(p for _, ps in parts for p in ps)
        return (f" WHERE {sql}" if sql else ""), params

    def _in_submolt_posts(self, column: str) -> tuple[str, tuple[Any, ...]]:
        if self.submolt_id is None:
            return "", ()
        return f"{column} IN (SELECT id FROM posts WHERE submolt_id = ?)", (self.submolt_id,)

    # --- consent: tombstones ------------------------------------------------------------------

    def _plan_tombstones(self) -> None:
        """Find the objecting agents' posts and comments that others' kept comments hang from."""
        objectors = self.consent.objectors
        where, params = self._where("created_at", self._in_submolt_posts("post_id"))
        comments = {
            cid: (post_id, parent_id, author_id)
            for cid, post_id, parent_id, author_id in self.snap.rows(
                f"SELECT id, post_id, parent_id, author_id FROM comments{where}", params
            )
        }
        marks = ",".join("?" * len(objectors))
        objector_posts = {
            pid for (pid,) in self.snap.rows(
                f"SELECT id FROM posts WHERE author_id IN ({marks})", tuple(objectors)
            )
        }  # fmt: skip
        for post_id, parent_id, author_id in comments.values():
            if author_id in objectors:
                continue
            if post_id in objector_posts:
                self._tombstone_posts.add(post_id)
            while parent_id is not None and parent_id in comments:
                if parent_id in self._tombstone_comments:
                    break
                _, grandparent, parent_author = comments[parent_id]
                if parent_author in objectors:
                    self._tombstone_comments.add(parent_id)
                parent_id = grandparent
        self._left_out_posts = objector_posts - self._tombstone_posts
        self._left_out_comments = {
            cid for cid, (_, _, author) in comments.items() if author in objectors
        } - self._tombstone_comments

    # --- entities -----------------------------------------------------------------------------

    def records(self, entity: str) -> Iterator[Record]:
        """The kept records of ``entity`` (a key of :data:`moltsim.export.records.ENTITIES`)."""
        readers: dict[str, Callable[[], Iterator[Record]]] = {
            "agents": self._agents, "submolts": self._submolts, "posts": self._posts,
            "comments": self._comments, "votes": self._votes, "follows": self._follows,
            "dms": self._dms, "actions": self._actions,
        }  # fmt: skip
        if entity not in readers:
            raise ValueError(f"no such entity {entity!r}; expected one of {sorted(readers)}")
        return readers[entity]()

    def _agents(self) -> Iterator[Record]:
        consent = self.consent
        brains = self.snap.brains()
        b64 = base64.b64encode
        for (agent_id, created, handle, display, bio, karma, objects, objected_at, key, posts,
             comments, followers, following) in self.snap.rows(
            "SELECT id, created_at, handle, display_name, bio, karma, objects_to_training,"
            " objected_at, public_key, post_count, comment_count, follower_count,"
            " following_count FROM agents ORDER BY id"
        ):  # fmt: skip
            if consent.objected(agent_id):
                consent.leave_out("agents", "objecting agent (profile and keys)")
                continue
            record: Record = {
                "id": agent_id, "created_at": iso(created), "name": handle,
                "display_name": display, "bio": bio, "karma": karma,
                "brain": brains.get(handle, "offline"), "objects_to_training": bool(objects),
                "objected_at": None if objected_at is None else iso(objected_at),
                "public_key": b64(key).decode(), "post_count": posts,
                "comment_count": comments, "follower_count": followers,
                "following_count": following,
            }  # fmt: skip
            consent.redact_record("agents", record, ("display_name", "bio"))
            yield record

    def _submolts(self) -> Iterator[Record]:
        consent = self.consent
        where = "" if self.submolt_id is None else " WHERE id = ?"
        params = () if self.submolt_id is None else (self.submolt_id,)
        for sub_id, created, name, title, description, owner_id, subs, posts in self.snap.rows(
            "SELECT id, created_at, name, title, description, owner_id, subscriber_count,"
            f" post_count FROM submolts{where} ORDER BY id",
            params,
        ):
            redacted = consent.objected(owner_id)
            if redacted:
                title, description = REDACTED, ""
                consent.redacted["submolts: title and description by an objecting agent"] += 1
            record: Record = {
                "id": sub_id, "created_at": iso(created), "name": name, "title": title,
                "description": description, "owner": consent.name(owner_id, self.handles),
                "subscriber_count": subs, "post_count": posts, "redacted": redacted,
            }  # fmt: skip
            consent.redact_record("submolts", record, ("title", "description"))
            yield record

    def _posts(self) -> Iterator[Record]:
        consent, handles, names = self.consent, self.handles, self.submolt_names
        extra = ("submolt_id = ?", (self.submolt_id,)) if self.submolt_id is not None else ("", ())
        where, params = self._where("created_at", extra)
        for (post_id, created, sub_id, author_id, title, body, url, score, ups, downs, count,
             status, pinned) in self.snap.rows(
            "SELECT id, created_at, submolt_id, author_id, title, body, url, score, ups, downs,"
            f" comment_count, status, pinned FROM posts{where} ORDER BY id", params
        ):  # fmt: skip
            redacted = False
            if consent.active and author_id in consent.objectors:
                if post_id not in self._tombstone_posts:
                    consent.leave_out("posts", "written by an objecting agent")
                    continue
                title, body, url, redacted = REDACTED, "", None, True
                consent.redacted["posts: tombstone of an objecting agent's post"] += 1
            record: Record = {
                "id": post_id, "created_at": iso(created), "submolt": names.get(sub_id, ""),
                "author": consent.name(author_id, handles), "title": title, "body": body,
                "url": url, "score": score, "upvotes": ups, "downvotes": downs,
                "comment_count": count, "status": STATUS.get(status, str(status)),
                "pinned": bool(pinned), "redacted": redacted,
            }  # fmt: skip
            if consent.active and not redacted:
                record["redacted"] = consent.redact_record(
                    "posts", record, ("title", "body", "url")
                )
            yield record

    def _comments(self) -> Iterator[Record]:
        consent, handles = self.consent, self.handles
        where, params = self._where("created_at", self._in_submolt_posts("post_id"))
        for (comment_id, created, post_id, parent_id, author_id, body, score, ups, downs, depth,
             status) in self.snap.rows(
            "SELECT id, created_at, post_id, parent_id, author_id, body, score, ups, downs, depth,"
            f" status FROM comments{where} ORDER BY id", params
        ):  # fmt: skip
            redacted = False
            if consent.active and author_id in consent.objectors:
                if comment_id not in self._tombstone_comments:
                    consent.leave_out("comments", "written by an objecting agent")
                    continue
                body, redacted = REDACTED, True
                consent.redacted["comments: tombstone of an objecting agent's comment"] += 1
            record: Record = {
                "id": comment_id, "created_at": iso(created), "post_id": post_id,
                "parent_id": parent_id, "author": consent.name(author_id, handles), "body": body,
                "score": score, "upvotes": ups, "downvotes": downs, "depth": depth,
                "status": STATUS.get(status, str(status)), "redacted": redacted,
            }  # fmt: skip
            if consent.active and not redacted:
                record["redacted"] = consent.redact_record("comments", record, ("body",))
            yield record

    def _votes(self) -> Iterator[Record]:
        consent, handles = self.consent, self.handles
        extra: tuple[str, tuple[Any, ...]] = ("", ())
        if self.submolt_id is not None:
            extra = (
                "(target_kind = 'post'"
                " AND target_id IN (SELECT id FROM posts WHERE submolt_id = ?))"
                " OR (target_kind = 'comment' AND target_id IN"
                " (SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id"
                " WHERE p.submolt_id = ?))",
                (self.submolt_id, self.submolt_id),
            )
        where, params = self._where("voted_at", extra)
        for kind, target_id, agent_id, value, voted_at in self.snap.rows(
            "SELECT target_kind, target_id, agent_id, value, voted_at FROM votes"
            f"{where} ORDER BY target_kind, target_id, agent_id",
            params,
        ):
            if consent.active:
                if agent_id in consent.objectors:
                    consent.leave_out("votes", "cast by an objecting agent")
                    continue
                gone = self._left_out_posts if kind == "post" else self._left_out_comments
                if target_id in gone:
                    consent.leave_out("votes", "on content that is left out")
                    continue
            yield {
                "id": vote_id(kind, target_id, agent_id), "created_at": iso(voted_at),
                "voter": (handles.get(agent_id) or f"#{agent_id}"), "target_type": kind,
                "target_id": target_id, "value": value,
            }  # fmt: skip

    def _follows(self) -> Iterator[Record]:
        if self.submolt_id is not None:
            return
        consent, handles = self.consent, self.handles
        where, params = self._where("created_at")
        for follower, followee, created in self.snap.rows(
            f"SELECT follower_id, followee_id, created_at FROM follows{where}"
            " ORDER BY follower_id, followee_id",
            params,
        ):
            if consent.objected(follower):
                consent.leave_out("follows", "made by an objecting agent")
                continue
            if consent.objected(followee):
                consent.redacted["follows: followee is an objecting agent"] += 1
            yield {
                "id": follow_id(follower, followee), "created_at": iso(created),
                "follower": (handles.get(follower) or f"#{follower}"),
                "followee": consent.name(followee, handles),
            }  # fmt: skip

    def _dms(self) -> Iterator[Record]:
        if self.submolt_id is not None:
            return
        consent, handles = self.consent, self.handles
        where, params = self._where("created_at")
        for dm_id, created, sender, recipient, body, proactive in self.snap.rows(
            "SELECT id, created_at, sender_id, recipient_id, body, proactive FROM dms"
            f"{where} ORDER BY id",
            params,
        ):
            if consent.objected(sender):
                consent.leave_out("dms", "written by an objecting agent")
                continue
            record: Record = {
                "id": dm_id, "created_at": iso(created),
                "sender": (handles.get(sender) or f"#{sender}"),
                "recipient": consent.name(recipient, handles), "body": body,
                "proactive": bool(proactive),
            }  # fmt: skip
            if consent.active:
                if consent.objected(recipient):
                    consent.redacted["dms: recipient is an objecting agent"] += 1
                consent.redact_record("dms", record, ("body",))
            yield record

    def _actions(self) -> Iterator[Record]:
        consent, handles = self.consent, self.handles
        where, params = self._where("sim_time")
        for (action_id, at, agent_id, seq, kind, outcome, message, payload, sig,
             result) in self.snap.rows(
            "SELECT id, sim_time, agent_id, seq, type, outcome, message, payload, sig, result"
            f" FROM actions{where} ORDER BY id", params
        ):  # fmt: skip
            if self.submolt_id is not None and not self._about_submolt(kind, payload, result):
                continue
            if consent.active and agent_id in consent.objectors:
                consent.leave_out("actions", "ledger row of an objecting agent")
                continue
            ok = outcome == "ok"
            record: Record = {
                "id": action_id, "created_at": iso(at),
                "agent": None if agent_id is None else (handles.get(agent_id) or f"#{agent_id}"),
                "seq": seq, "type": kind, "status": "accepted" if ok else "refused",
                "error_code": None if ok else outcome, "message": message, "payload": payload,
                "sig": sig, "result": result, "redacted": False,
            }  # fmt: skip
            if consent.active and kind == "llm_call":
                # A decision's record quotes what the agent was shown, an objecting agent's
                # posts among them: its prompt and raw answers are withheld.
                record.update(payload=_without_quotes(payload), sig=None, redacted=True)
                consent.redacted["actions: LLM prompt and raw answers withheld"] += 1
            elif consent.active:
                if agent_id is None and not ok:
                    # An envelope nobody could be told to have sent may be an objecting
                    # agent's: its text is withheld, not merely its handle.
                    record.update(payload="null", sig=None, redacted=True)
                    consent.redacted["actions: envelope from no known agent withheld"] += 1
                else:
                    record["redacted"] = consent.redact_record(
                        "actions", record, ("payload", "message", "result")
                    )
            yield record

    def _about_submolt(self, kind: str, payload: str, result: str | None) -> bool:
        """Whether a ledger row concerns the selected submolt (``--submolt``)."""
        if kind not in SUBMOLT_ACTIONS and kind not in ("create_submolt", "comment", "vote"):
            return False
        try:
            action = json.loads(payload)
            done = json.loads(result) if result else {}
        except json.JSONDecodeError:
            return False
        if not isinstance(action, dict) or not isinstance(done, dict):
            return False
        name = self.options.submolt
        if kind in SUBMOLT_ACTIONS:
            return bool(action.get("submolt") == name)
        if kind == "create_submolt":
            return bool(action.get("name") == name)
        posts, comments = self._submolt_content()
        if kind == "comment":
            return done.get("post_id", action.get("post_id")) in posts or (
                action.get("parent_id") in comments
            )
        target = posts if action.get("target") == "post" else comments
        return action.get("id") in target

    def _submolt_content(self) -> tuple[set[int], set[int]]:
        if self._submolt_posts is None or self._submolt_comments is None:
            self._submolt_posts = {
                pid for (pid,) in self.snap.rows(
                    "SELECT id FROM posts WHERE submolt_id = ?", (self.submolt_id,))
            }  # fmt: skip
            self._submolt_comments = {
                cid for (cid,) in self.snap.rows(
                    "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id"
                    " WHERE p.submolt_id = ?", (self.submolt_id,))
            }  # fmt: skip
        return self._submolt_posts, self._submolt_comments


def _without_quotes(payload: str) -> str:
    """An ``llm_call`` payload without its request and answers (its figures are kept)."""
    try:
        call = json.loads(payload)
    except json.JSONDecodeError:
        return "null"
    if not isinstance(call, dict):
        return "null"
    call.update(request="", answers=[])
    return json.dumps(call, ensure_ascii=False, separators=(",", ":"))
