"""``bench/agents.py`` still runs (tiny sizes; the figures are not checked against goals)."""

from __future__ import annotations

from bench import agents


def test_prompt_tokens_run() -> None:
    figures = agents.prompt_tokens(heartbeats=12)
    assert 0 < figures["llm_prompt_tokens_observation_last"] < figures["llm_prompt_tokens_last"]
    assert figures["llm_prompt_tokens_first"] <= figures["llm_prompt_tokens_max"]
    assert figures["llm_prompt_tokens_skill"] < figures["llm_prompt_tokens_system"]


def test_pool_rss_runs() -> None:
    figures = agents.pool_rss(agents=300, fresh_processes=False)
    assert set(figures) == {"pool_rss_kb_per_agent", "pool_rss_kb_per_agent_manifest"}
    # In a process that already freed memory the deltas are rough: only check they are numbers.
    assert all(isinstance(value, float) for value in figures.values())
