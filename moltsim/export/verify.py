"""``moltsim verify``: check an export against the signatures it carries.

Three checks, each independent of the run file:

1. every file still has the sha256 the manifest lists;
2. every signed ledger row's ``sig`` verifies against its agent's exported public key, over the
   canonical JSON of ``{"v": 1, "agent", "seq", "action": payload}``;
3. every exported post, comment, DM, vote and follow matches the accepted, signed action that
   made it (the ledger's ``result`` names the new ids), so edited text is caught even when the
   manifest is rewritten to match.

Rows the runner wrote itself (registrations, objections, seeded posts) carry no signature and
are counted as unsigned. Envelopes refused before the rules (bad signature, unknown agent,
malformed...) are expected not to verify and are reported apart. Anything else that does not
verify is a failure.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import VerifyKey
from pydantic import ValidationError

from moltsim.domain.actions import ACTION_ADAPTER
from moltsim.export import manifest as manifests
from moltsim.export.readback import Export
from moltsim.export.records import REDACTED, Record
from moltsim.identity.signing import verify as verify_sig
from moltsim.wire.gateway import ENVELOPE_FAILURES

SHOWN_FAILURES = 20


@dataclass
class Verification:
    """What ``verify`` found."""

    signatures_ok: int = 0
    unsigned: Counter[str] = field(default_factory=Counter)
    refused_envelopes: Counter[str] = field(default_factory=Counter)
    """Envelopes refused before the rules, by outcome: not expected to verify."""
    redacted: int = 0
    content_ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        out = [f"signatures verified   {self.signatures_ok:>10,}"]
        for kind, count in sorted(self.unsigned.items()):
            out.append(f"unsigned (runner)     {count:>10,}  {kind}")
        for code, count in sorted(self.refused_envelopes.items()):
            out.append(f"refused envelope      {count:>10,}  {code} (not expected to verify)")
        if self.redacted:
            out.append(f"redacted, unchecked   {self.redacted:>10,}  (training export)")
        for entity, count in sorted(self.content_ok.items()):
            out.append(f"{entity + ' match':<22}{count:>10,}  their signed actions")
        if self.failures:
            out.append(f"FAILED                {len(self.failures):>10,}")
            out.extend(f"  {line}" for line in self.failures[:SHOWN_FAILURES])
            if len(self.failures) > SHOWN_FAILURES:
                out.append(f"  ... and {len(self.failures) - SHOWN_FAILURES} more")
        else:
            out.append("ok: every signature and record checks out")
        return out


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _lower(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


class _Checker:
    def __init__(self, export: Export) -> None:
        self.export = export
        self.result = Verification()
        self.training = export.manifest.get("purpose") == "training"
        self.keys: dict[str, VerifyKey] = {}
        self.posts: dict[int, tuple[str, dict[str, Any], str]] = {}
        self.comments: dict[int, tuple[str, dict[str, Any], str, Any]] = {}
        self.dms: dict[int, tuple[str, dict[str, Any], str]] = {}
        self.votes: dict[tuple[str, str, Any], int] = {}
        self.follows: set[tuple[str, str]] = set()

    def fail(self, message: str) -> None:
        self.result.failures.append(message)

    def run(self) -> Verification:
        self._files()
        self._keys()
        for row in self.export.records("actions"):
            self._action(row)
        self._content()
        return self.result

    def _files(self) -> None:
        for name, entry in sorted(self.export.manifest["files"].items()):
            path = self.export.folder / name
            if not path.exists():
                self.fail(f"{name}: listed in the manifest but missing")
            elif manifests.sha256(path) != entry.get("sha256"):
                self.fail(f"{name}: changed after the export (sha256 differs from the manifest)")

    def _keys(self) -> None:
        for agent in self.export.records("agents"):
            try:
                key = VerifyKey(base64.b64decode(str(agent["public_key"]), validate=True))
            except (binascii.Error, NaclValueError, ValueError, TypeError):
                self.fail(f"agent @{agent.get('name')}: public_key is not a base64 Ed25519 key")
                continue
            self.keys[_lower(agent["name"])] = key

    def _action(self, row: Record) -> None:
        where = f"action #{row['id']} ({row['type']}, @{row['agent']}, seq {row['seq']})"
        if row.get("redacted"):
            if not self.training:
                self.fail(f"{where}: marked redacted in an export made for analysis")
            self.result.redacted += 1
            return
        sig, code = row.get("sig"), row.get("error_code")
        if code in ENVELOPE_FAILURES:
            self.result.refused_envelopes[str(code)] += 1
            return
        if sig is None:
            self.result.unsigned[str(row["type"])] += 1
        else:
            key = self.keys.get(_lower(row["agent"]))
            action = _json(row["payload"])
            if key is None:
                self.fail(f"{where}: signed by an agent whose public key is not in the export")
                return
            fields = {"v": 1, "agent": row["agent"], "seq": row["seq"], "action": action}
            if action is None or not verify_sig(key, fields, str(sig)):
                self.fail(f"{where}: the signature does not verify")
                return
            self.result.signatures_ok += 1
        if row["status"] == "accepted":
            self._index(row)

    def _index(self, row: Record) -> None:
        """Remember what an accepted action created, to compare with the entity records."""
        action, result = _applied(_json(row["payload"])), _json(row.get("result")) or {}
        if not isinstance(action, dict) or not isinstance(result, dict):
            return
        agent, kind, at = _lower(row["agent"]), row["type"], row["created_at"]
        if kind == "post" and "post_id" in result:
            self.posts[result["post_id"]] = (agent, action, at)
        elif kind == "comment" and "comment_id" in result:
            self.comments[result["comment_id"]] = (agent, action, at, result.get("post_id"))
        elif kind == "dm" and "dm_id" in result:
            self.dms[result["dm_id"]] = (agent, action, at)
        elif kind == "vote":
            key = (agent, str(action.get("target")), action.get("id"))
            if action.get("value"):
                self.votes[key] = action["value"]
            else:
                self.votes.pop(key, None)
        elif kind == "follow":
            self.follows.add((agent, _lower(action.get("agent"))))
        elif kind == "unfollow":
            self.follows.discard((agent, _lower(action.get("agent"))))

    def _redacted(self, record: Record) -> bool:
        """In a training export, records that carry a redaction cannot match a signature."""
        if not self.training:
            return False
        return bool(record.get("redacted")) or any(
            isinstance(v, str) and REDACTED in v for v in record.values()
        )

    def _compare(self, what: str, pairs: dict[str, tuple[Any, Any]]) -> bool:
        wrong = [name for name, (have, signed) in pairs.items() if have != signed]
        if wrong:
            self.fail(f"{what}: {', '.join(wrong)} differ from the signed action that made it")
        return not wrong

    def _content(self) -> None:
        checks = {
            "posts": self._post, "comments": self._comment, "dms": self._dm,
            "votes": self._vote, "follows": self._follow,
        }  # fmt: skip
        for entity, check in checks.items():
            for record in self.export.records(entity):
                if self._redacted(record):
                    self.result.redacted += 1
                elif check(record):
                    self.result.content_ok[entity] += 1

    def _post(self, r: Record) -> bool:
        made = self.posts.get(r["id"])
        if made is None:
            self.fail(f"post #{r['id']}: no accepted action in the export created it")
            return False
        agent, action, at = made
        return self._compare(f"post #{r['id']}", {
            "author": (_lower(r["author"]), agent),
            "submolt": (r["submolt"], action.get("submolt")),
            "title": (r["title"], action.get("title")),
            "body": (r["body"], action.get("body", "")),
            "url": (r["url"], action.get("url")), "created_at": (r["created_at"], at),
        })  # fmt: skip

    def _comment(self, r: Record) -> bool:
        made = self.comments.get(r["id"])
        if made is None:
            self.fail(f"comment #{r['id']}: no accepted action in the export created it")
            return False
        agent, action, at, post_id = made
        return self._compare(f"comment #{r['id']}", {
            "author": (_lower(r["author"]), agent), "body": (r["body"], action.get("body")),
            "post_id": (r["post_id"], post_id),
            "parent_id": (r["parent_id"], action.get("parent_id")),
            "created_at": (r["created_at"], at),
        })  # fmt: skip

    def _dm(self, r: Record) -> bool:
        made = self.dms.get(r["id"])
        if made is None:
            self.fail(f"dm #{r['id']}: no accepted action in the export created it")
            return False
        agent, action, at = made
        return self._compare(f"dm #{r['id']}", {
            "sender": (_lower(r["sender"]), agent),
            "recipient": (_lower(r["recipient"]), _lower(action.get("to"))),
            "body": (r["body"], action.get("body")), "created_at": (r["created_at"], at),
        })  # fmt: skip

    def _vote(self, r: Record) -> bool:
        signed = self.votes.get((_lower(r["voter"]), str(r["target_type"]), r["target_id"]))
        if signed != r["value"]:
            self.fail(f"vote {r['id']}: value {r['value']} is not the last signed vote ({signed})")
            return False
        return True

    def _follow(self, r: Record) -> bool:
        if (_lower(r["follower"]), _lower(r["followee"])) not in self.follows:
            self.fail(f"follow {r['id']}: no accepted signed follow made it")
            return False
        return True


def _applied(action: Any) -> Any:
    """The action as the engine applied it: the action models trim titles and bodies, so a post
    signed with the title " hi " is titled "hi"."""
    try:
        return ACTION_ADAPTER.validate_python(action).model_dump()
    except ValidationError:
        return action


def verify_export(folder: str | Path) -> Verification:
    """Check the export in ``folder``; raises :class:`ExportError` if it cannot be read."""
    return _Checker(Export(Path(folder))).run()
