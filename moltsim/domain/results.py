"""The answer the engine gives to every envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moltsim.domain.errors import ErrorCode, Refusal


@dataclass(slots=True)
class Outcome:
    """``ok`` with ``data`` (new ids, query results), or a refusal ``code`` with a message."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    code: ErrorCode | None = None
    message: str = ""
    retry_after: float | None = None

    @classmethod
    def success(cls, **data: Any) -> Outcome:
        return cls(ok=True, data=data)

    @classmethod
    def refused(cls, refusal: Refusal) -> Outcome:
        return cls(
            ok=False, code=refusal.code, message=refusal.message, retry_after=refusal.retry_after
        )

    @property
    def label(self) -> str:
        """``ok`` or the refusal code: the ``outcome`` column of the ledger."""
        return "ok" if self.ok else str(self.code)

    def to_json_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, **self.data}
        out: dict[str, Any] = {"ok": False, "code": str(self.code), "message": self.message}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out
