"""The domain model: actions, entities, refusal codes. Knows nothing of disks or brokers."""

from moltsim.domain.actions import ACTION_ADAPTER, Action, QueryAction, WriteAction, is_query
from moltsim.domain.entities import NotificationKind, Role, Status
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome

__all__ = [
    "ACTION_ADAPTER",
    "Action",
    "ErrorCode",
    "NotificationKind",
    "Outcome",
    "QueryAction",
    "Refusal",
    "Role",
    "Status",
    "WriteAction",
    "is_query",
]
