"""Queries off the event loop: each runs in a thread worker, one at a time per name.

A thread worker cannot be cancelled mid-query, so ``exclusive=True`` alone would let them pile
up under load. Instead a request made while the same name is still running is remembered
(the newest wins) and started when the running one ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from moltsim.tui.pulse import Pulse
from moltsim.tui.source import RunSource

Query = Callable[[sqlite3.Connection], Any]
Done = Callable[[Any], None]


class Watcher(Protocol):
    """What the watcher's screens and fetchers read of the app that runs them
    (:class:`moltsim.tui.app.WatchApp`, which imports the screens)."""

    @property
    def source(self) -> RunSource: ...

    @property
    def pulse(self) -> Pulse | None: ...


@dataclass
class _Request:
    query: Query
    done: Done
    after: Callable[[], None] | None


@dataclass
class _Slot:
    running: Worker[Any] | None = None
    request: _Request | None = None
    pending: _Request | None = None


class Fetcher:
    """Runs a node's queries in thread workers and hands results back on the event loop.

    The node must pass its ``Worker.StateChanged`` events to :meth:`handle`.
    """

    def __init__(self, node: DOMNode, lane: str = "screens") -> None:
        self._node = node
        self._lane = lane
        self._slots: dict[str, _Slot] = {}

    def fetch(
        self,
        name: str,
        query: Query,
        done: Done,
        *,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Run ``query`` on the run file, then ``done(result)`` on the event loop; ``after``
        runs once the query ended, whether it succeeded or not."""
        slot = self._slots.setdefault(name, _Slot())
        request = _Request(query, done, after)
        if slot.running is not None:
            slot.pending = request
            return
        self._start(name, slot, request)

    def busy(self) -> bool:
        """Whether any query is running or waiting."""
        return any(s.running is not None or s.pending is not None for s in self._slots.values())

    def _start(self, name: str, slot: _Slot, request: _Request) -> None:
        source = cast(Watcher, self._node.app).source
        query, lane = request.query, self._lane
        worker = self._node.run_worker(
            lambda: source.read(query, lane),
            name=name,
            group=f"fetch-{name}",
            thread=True,
            exit_on_error=False,
        )
        slot.running = worker
        slot.request = request

    def handle(self, event: Worker.StateChanged) -> bool:
        """Deliver a finished query's result; returns whether the event was one of ours."""
        worker = event.worker
        slot = self._slots.get(worker.name)
        if slot is None or slot.running is not worker:
            return False
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return True
        request = slot.request
        slot.running = slot.request = None
        assert request is not None
        try:
            if event.state is WorkerState.SUCCESS:
                with contextlib.suppress(NoMatches):  # the node is closing: its widgets are gone
                    request.done(worker.result)
            elif event.state is WorkerState.ERROR:
                self._node.app.notify(
                    f"reading the run file failed: {worker.error}",
                    title="read error",
                    severity="error",
                )
        finally:
            if request.after is not None:
                request.after()
            if slot.pending is not None:
                pending, slot.pending = slot.pending, None
                self._start(worker.name, slot, pending)
        return True
