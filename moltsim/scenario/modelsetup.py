"""The model side of a run: serve the scenario's local model if it names one, check every
endpoint, and hand the pools a configuration that says where to call and how.

Used by ``moltsim run`` (and ``--resume``) and ``moltsim llm check``. The local server is this
process's child: it is stopped when the run ends, on Ctrl-C, and on any failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moltsim.llm.config import LlmConfig
from moltsim.llm.local.catalog import find_model
from moltsim.llm.local.fetch import ensure_model
from moltsim.llm.local.server import LocalServer, plan_server
from moltsim.scenario.llmcheck import CheckReport, check_llm, plural
from moltsim.scenario.load import PlannedAgent
from moltsim.scenario.schema import Scenario

log = logging.getLogger("moltsim.run")


@dataclass
class ModelSetup:
    """``await setup.start()`` before the agents, ``setup.stop()`` after them."""

    scenario: Scenario
    agents: list[PlannedAgent]
    say: Callable[[str], None] = print
    server: LocalServer | None = None
    report: CheckReport | None = None
    config: LlmConfig | None = None
    """Where the pools call the model, with the mode and concurrency the check found."""
    _log_path: Path | None = field(default=None, repr=False)

    @property
    def needed(self) -> bool:
        return self.scenario.llm is not None and any(a.brain == "openai" for a in self.agents)

    async def start(self, pools: int = 1) -> LlmConfig | None:
        """Serve and check the model; ``None`` when no agent uses one. ``pools``: how many
        pool processes host LLM agents (they share the server's slots). Raises
        ``LlmCheckError``, ``LocalModelError`` or ``LlmConfigError`` with one line to show."""
        if self.scenario.llm is None or not self.needed:
            return None
        llm: LlmConfig = self.scenario.llm
        try:
            if llm.local is not None:
                llm = self._serve(llm)
            self.say(f"checking the model at {', '.join(llm.urls)}...")
            self.report = await check_llm(self.scenario, self.agents, llm)
        except BaseException:
            self.stop()
            raise
        for line in self.report.lines():
            self.say(line)
        concurrency = llm.concurrency or max(1, self.report.slots // max(1, pools))
        mode = self.report.mode or llm.structured_output
        self.config = llm.model_copy(update={"concurrency": concurrency, "structured_output": mode})
        return self.config

    def _serve(self, llm: LlmConfig) -> LlmConfig:
        assert llm.local is not None
        model = find_model(llm.local)
        path = ensure_model(model, progress=self.say)
        plan = plan_server(model, path, slots=llm.slots, threads=llm.threads)
        handle, name = tempfile.mkstemp(prefix="moltsim-llm-server-", suffix=".log")
        os.close(handle)
        self._log_path = Path(name)
        self.say(
            f"starting the local model {model.name} ({plural(plan.slots, 'slot')},"
            f" {plural(plan.threads, 'thread')},"
            f" {plan.ctx_per_slot:,} tokens of context each)..."
        )
        self.server = LocalServer(plan, self._log_path)
        self.server.start()
        served = llm.served_at(self.server.base_url, plan.slots)
        return served.model_copy(update={"model": plan.alias})

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def keep_log(self, logs: Path) -> None:
        """Move the local server's log into the run's ``logs/`` (it starts before the folder)."""
        if self._log_path is not None and self._log_path.exists():
            with open(logs / "llm-server.out", "ab") as out, open(self._log_path, "rb") as src:
                shutil.copyfileobj(src, out)
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
