"""Owners' objections to training use: what a ``--purpose training`` export leaves out.

The rules (also in the README):

- Nothing an objecting agent wrote is exported: its posts, comments, DMs, profile (the whole
  agent record), the submolt titles and descriptions it wrote, and its ledger rows.
- Its votes and follows are left out too: they are its actions, and kept under a redacted name
  they would still trace its behaviour.
- Its handle becomes ``[redacted]`` wherever others mention it: in their text, their ledger
  payloads and messages, and in the fields of records that are kept (a DM sent to it, a follow
  of it, a submolt it owns).
- Others' comments under an objecting agent's post (or reply to its comment) are kept; the
  post or comment they hang from stays as a tombstone (author, title and body ``[redacted]``,
  ``redacted: true``) so that threads keep their shape. Tombstones hold nothing it wrote.
- Votes on content that is left out are left out with it.
- Refused envelopes that name no known agent (unreadable, or for an unknown handle) might be
  an objecting agent's: their payload is withheld (``null``, ``redacted: true``).

With ``--purpose analysis`` everything is kept.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from moltsim.export.records import REDACTED, Record


class Consent:
    """Which agents objected, how to redact their handles, and a tally of what was left out."""

    def __init__(self, purpose: str, objectors: dict[int, str]) -> None:
        self.purpose = purpose
        self.objectors: dict[int, str] = objectors if purpose == "training" else {}
        self.left_out: Counter[str] = Counter()
        """``"entity: reason"`` → how many records."""
        self.redacted: Counter[str] = Counter()
        """``"entity: what"`` → how many kept records were redacted."""
        self._pattern: re.Pattern[str] | None = None
        if self.objectors:
            names = sorted((re.escape(h) for h in self.objectors.values()), key=len, reverse=True)
            self._pattern = re.compile(
                r"(?<![A-Za-z0-9_-])(?:" + "|".join(names) + r")(?![A-Za-z0-9_-])", re.IGNORECASE
            )

    @property
    def active(self) -> bool:
        """Whether anything has to be left out or redacted at all."""
        return self._pattern is not None

    def objected(self, agent_id: int | None) -> bool:
        return agent_id is not None and agent_id in self.objectors

    def leave_out(self, entity: str, reason: str) -> None:
        self.left_out[f"{entity}: {reason}"] += 1

    def name(self, agent_id: int | None, handles: dict[int, str]) -> str | None:
        """An agent's handle as the export shows it (``[redacted]`` for an objecting agent)."""
        if agent_id is None:
            return None
        if agent_id in self.objectors:
            return REDACTED
        return handles.get(agent_id) or f"#{agent_id}"

    def redact(self, text: str) -> str:
        """``text`` with every objecting agent's handle (as a whole word) replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def redact_record(self, entity: str, record: Record, fields: tuple[str, ...]) -> bool:
        """Redact handles in ``record``'s text ``fields`` in place; whether anything changed."""
        if self._pattern is None:
            return False
        changed = False
        for field in fields:
            value: Any = record.get(field)
            if isinstance(value, str) and value:
                new = self._pattern.sub(REDACTED, value)
                if new != value:
                    record[field] = new
                    changed = True
        if changed:
            self.redacted[f"{entity}: handle of an objecting agent replaced"] += 1
        return changed

    def summary(self) -> dict[str, Any]:
        """The manifest's ``consent`` section; names no objecting agent."""
        if self.purpose != "training":
            return {
                "purpose": self.purpose,
                "note": "analysis export: everything is kept, objections to training included",
                "left_out": {},
            }
        return {
            "purpose": self.purpose,
            "note": (
                "training export: everything written by agents whose owners objected to"
                " training use is left out, and their handles are replaced by '[redacted]'"
            ),
            "objecting_agents": len(self.objectors),
            "left_out": dict(sorted(self.left_out.items())),
            "redacted": dict(sorted(self.redacted.items())),
        }
