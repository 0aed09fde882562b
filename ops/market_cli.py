"""`citygrid market audit INTERVAL`: anyone re-checks one interval from its signed orders to the chain.

It fetches what the market published for the interval (its signed orders, trades and summary, from
Kafka, or a file `--save` wrote earlier), checks each order's signature against the participants
registry and the orders' Merkle root, clears them again and compares trades, price and trades hash
(citygrid.stream.market.audit), then reads the settlement extrinsic back from the chain and checks its
remark and transfers against the re-derived trades (citygrid.ledger.audit). Any difference is printed
and the command exits 1. Tooling: it joins the stream's and the ledger's halves, which never import
each other.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from citygrid.interval_records import IntervalSummary, PublishedInterval
from citygrid.settings import CitygridSettings, get_settings

app = typer.Typer()
console = Console()


def fetch_interval(s: CitygridSettings, interval: int) -> PublishedInterval | str:
    """The interval as published on Kafka (a worker takeover's duplicates collapsed), or what is wrong."""
    from citygrid.market import Trade
    from citygrid.signed_orders import SignedOrder
    from citygrid.stream.kafka_topics import read_topic
    from citygrid.topics import cleared_orders_topic, interval_summaries_topic

    key = str(interval).encode()

    def values(topic: str) -> list[bytes]:
        return sorted({r.value for r in read_topic(s.kafka, topic, 5) if r.key == key})

    summaries = [IntervalSummary.model_validate_json(v) for v in values(interval_summaries_topic(s.kafka))]
    summaries = list({x.encode(): x for x in summaries}.values())  # canonical bytes: one per distinct summary
    if len(summaries) != 1:
        return f"{len(summaries)} distinct summaries published for interval {interval} (need exactly one)"
    orders = [SignedOrder.decode(v) for v in values(cleared_orders_topic(s.kafka))]
    trades = {t.model_dump_json(): t for t in map(Trade.model_validate_json, values(s.kafka.trades_topic))}
    return PublishedInterval(summary=summaries.pop(), orders=orders, trades=list(trades.values()))


def _from_file(path: Path, interval: int) -> PublishedInterval | str:
    """The interval in a file `--save` (or anyone) wrote: a JSON list of published intervals."""
    from pydantic import TypeAdapter, ValidationError

    try:
        saved = TypeAdapter(list[PublishedInterval]).validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        return f"{path} is not a list of published intervals: {str(exc)[:300]}"
    found = [p for p in saved if p.summary.interval_start_ms == interval]
    return found[0] if len(found) == 1 else f"{path} holds {len(found)} records of interval {interval}"


def _chain_problems(s: CitygridSettings, published: PublishedInterval, block: str | None) -> list[str]:
    from citygrid.ledger.audit import audit_settlement, settlement_inclusion
    from citygrid.ledger.chain import ChainClient, Inclusion
    from citygrid.ledger.participants import load_enrolled
    from citygrid.ledger.settlement_store import SettlementStore

    chain = ChainClient(s.chain.url)
    try:
        block_hash, _, index = (block or "").partition(":")
        inclusion = (Inclusion(block_hash, 0, int(index or 0)) if block else
                     settlement_inclusion(SettlementStore(s.paths.settlement_store),
                                          published.summary.interval_start_ms))
        if inclusion is None:
            return ["the interval is not settled (no settled record in the settlement store; give --block)"]
        return audit_settlement(chain, inclusion, published.summary, published.trades,
                                load_enrolled(s.paths.participants), s.settlement.grid_operator or "grid")
    finally:
        chain.close()


@app.command()
def audit(interval: int = typer.Argument(..., help="The interval's start (ms)."),
          book: Path = typer.Option(None, "--from-file", help="Audit a saved interval instead of Kafka's."),
          save: Path = typer.Option(None, "--save", help="Write the fetched interval here (JSON list)."),
          block: str = typer.Option(None, "--block", help="The settlement extrinsic as BLOCK_HASH:INDEX "
                                    "(default: where the settler's store says)."),
          chain: bool = typer.Option(True, help="Also check the settlement on chain.")) -> None:
    """Re-check one interval: signed orders → Merkle root → clearing → trades → the chain's payments."""
    from citygrid.participants import Participants
    from citygrid.stream.market.auction import MarketPlan
    from citygrid.stream.market.audit import audit_book

    s = get_settings()
    t0 = time.perf_counter()
    published = _from_file(book, interval) if book else fetch_interval(s, interval)
    if isinstance(published, str):
        console.print(f"[red]FAILED:[/] {published}")
        raise typer.Exit(1)
    if save:
        save.write_text(f"[{published.model_dump_json()}]")
    participants = Participants.load(s.paths.participants)
    problems = audit_book(published, participants, MarketPlan.from_settings(s.market, participants))
    if not problems and chain:
        problems = _chain_problems(s, published, block)
    for p in problems:
        console.print(f"[red]FAILED:[/] {p}")
    if problems:
        raise typer.Exit(1)
    summary = published.summary
    console.print(f"[green]AUDIT PASSED[/] interval {interval}: {summary.order_count} signed orders "
                  f"(root {summary.orders_root[:16]}…), {summary.trade_count} trades, "
                  f"{'settlement on chain checked' if chain else 'chain not checked'} in "
                  f"{time.perf_counter() - t0:.2f} s")
