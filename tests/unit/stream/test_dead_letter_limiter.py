"""The ingest's dead-letter rate limit: a burst per source, then its rate; other sources unaffected;
inventing sources does not get a flood past the shared limit."""

from __future__ import annotations

from citygrid.stream.ingest import DeadLetterLimiter


def test_a_source_gets_its_burst_then_its_rate() -> None:
    lim = DeadLetterLimiter(rate_per_s=2, burst=5)
    assert [lim.allow("a", now=0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert lim.allow("b", now=0.0)  # another device's dead letters still get through
    assert [lim.allow("a", now=1.0) for _ in range(3)] == [True, True, False]


def test_made_up_sources_share_one_limit_and_memory_stays_bounded() -> None:
    lim = DeadLetterLimiter(rate_per_s=1, burst=2, sources_at_once=10, max_sources=100)
    allowed = sum(lim.allow(f"t/{i}", now=0.0) for i in range(10_000))
    assert allowed == 20
    assert len(lim._buckets) <= 100
