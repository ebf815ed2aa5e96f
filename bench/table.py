"""Print bench-results.json as the Markdown table of docs/benchmarks.md (figures and goals)."""

from __future__ import annotations

import json

from bench.results import RESULTS

GOALS: dict[str, str] = {
    "engine_inprocess_actions_per_s": ">= 20,000 at 1M rows",
    "feed_hot_reads_per_s_1m_posts": ">= 2,000, flat in posts",
    "e2e_mosquitto_actions_per_s": ">= 10,000",
    "e2e_mosquitto_ack_p99_ms": "< 50 at 2,000/s",
    "llm_prompt_tokens_last": "<= 1,500, no upward trend",
    "pool_rss_kb_per_agent": "<= 30",
    "offline_10k_agents_24h_wall_s": "<= 300",
    "export_jsonl_records_per_s": ">= 200,000 at 1M records",
    "resume_after_kill_s": "< 5",
    "tui_first_screen_1m_posts_ms": "< 1,000",
    "fuzz_envelopes_total": ">= 100,000",
    "fuzz_engine_crashes": "0",
    "forgery_envelopes_total": ">= 10,000",
    "forgery_accepted": "0",
    "llm_valid_action_rate": ">= 0.95 (1.5B model)",
    "llm_overhead_ratio": ">= 0.9 (1.5B model)",
}


def main() -> None:
    figures = json.loads(RESULTS.read_text())
    print("| figure | latest | goal |\n|---|---:|---|")
    for name, value in figures.items():
        print(f"| `{name}` | {value:,.1f} | {GOALS.get(name, '')} |")


if __name__ == "__main__":
    main()
