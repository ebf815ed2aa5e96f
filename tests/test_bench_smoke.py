"""The benchmarks behind ``make bench`` still run (tiny sizes; the figures are not checked)."""

from __future__ import annotations

from bench import engine_mix, feed_reads, gateway


async def test_engine_mix_runs_and_mostly_accepts() -> None:
    figures = await engine_mix.run(rows_target=4_000, steady_actions=engine_mix.SLICE)
    assert figures["engine_inprocess_actions_per_s"] > 0
    assert figures["engine_inprocess_refused_fraction"] < 0.2


def test_feed_reads_run() -> None:
    figures = feed_reads.run(sizes=(1_000,), seconds=0.05)
    assert figures["feed_hot_reads_per_s_1k_posts"] > 0


def test_the_gateway_benchmark_runs_both_ways() -> None:
    figures = gateway.run(envelopes=600)
    assert figures["gateway_signed_envelopes_per_s_in_order"] > 0
    assert figures["gateway_signed_envelopes_per_s_ahead"] > 0
