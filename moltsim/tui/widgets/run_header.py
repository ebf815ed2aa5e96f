"""The run header: sim clock, run state, agents online, activity, refusals, tokens and cost."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from moltsim.tui.format import count, sim_clock
from moltsim.tui.pulse import Pulse

STATE_STYLES = {
    "running": "bold green",
    "active": "bold green",
    "finished": "bold blue",
    "stopped": "bold yellow",
    "unknown": "yellow",
    "interrupted": "bold yellow",
    "failed": "bold red",
}


class RunHeader(Static):
    """Two lines about the run as a whole, redrawn on each poll."""

    def __init__(self, pulse: Pulse | None = None, *, id: str | None = "run-header") -> None:
        super().__init__(render_pulse(pulse), id=id)

    def show(self, pulse: Pulse | None) -> None:
        self.update(render_pulse(pulse))


def render_pulse(pulse: Pulse | None) -> Text:
    if pulse is None:
        return Text("reading the run file…", style="dim")
    text = Text()
    text.append("moltsim", style="bold")
    if pulse.run_name:
        text.append(f" · {pulse.run_name}")
    text.append(" · sim ")
    text.append(sim_clock(pulse.sim_time), style="bold")
    text.append(" · ")
    text.append(pulse.state, style=STATE_STYLES.get(pulse.state, ""))
    if pulse.llm_calls:
        text.append(f" · LLM {count(pulse.llm_calls)} calls")
        if pulse.llm_failed:
            text.append(f", {count(pulse.llm_failed)} failed", style="bold red")
        text.append(f", p50 {pulse.llm_server_p50_ms / 1000:.1f} s")
    text.append("\n")
    online = "online" if pulse.online_measured else "active in the last sim-hour"
    text.append(f"{count(pulse.agents)} agents, {count(pulse.agents_online)} {online}")
    text.append(f" · {count(pulse.actions_per_sim_hour)} actions/sim-hour")
    share = f" ({pulse.refusals / pulse.actions:.1%})" if pulse.actions else ""
    text.append(f" · {count(pulse.refusals)} refused{share}")
    tokens = pulse.prompt_tokens + pulse.completion_tokens
    text.append(f" · {count(tokens)} tokens")
    if pulse.cost_usd is not None:
        cost = pulse.cost_usd
        text.append(f" · ${cost:,.2f}" if cost >= 1 else f" · ${cost:.4f}")
    return text
