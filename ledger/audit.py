"""The chain half of `citygrid market audit`: what an interval's settlement extrinsic did on chain.

The settlement of an interval commits, in its remark, the market summary's orders root, price digest
and trades hash (citygrid.ledger.remarks), and pays each trade with one asset transfer plus one grid
fee transfer per buyer. Given the summary and trades an auditor has re-derived from signed orders,
this reads the extrinsic's events back and says what differs, so a payment no signed order backs, or
a remark committing to another book, is caught.
"""

from __future__ import annotations

from citygrid.interval_records import IntervalSummary
from citygrid.ledger.chain import ChainClient, Inclusion
from citygrid.ledger.remarks import remark_hash, settlement_remark
from citygrid.ledger.settlement_history import expected_transfers, read_back
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Trade
from citygrid.participants import Participants


def settlement_inclusion(store: SettlementStore, interval_start_ms: int) -> Inclusion | None:
    """Where the settler's store says the interval was settled (None if it was not)."""
    record = store.get(interval_start_ms)
    if record is None or record.status != "settled" or record.block_hash is None:
        return None
    return Inclusion(record.block_hash, record.block_number or 0, record.extrinsic_index or 0)


def audit_settlement(chain: ChainClient, inclusion: Inclusion, summary: IntervalSummary,
                     trades: list[Trade], participants: Participants, grid_operator: str) -> list[str]:
    """Every way the extrinsic at `inclusion` differs from settling `trades` under `summary` (none: it
    holds)."""
    from citygrid.ledger.settlement_store import Settlement

    record = Settlement(summary.interval_start_ms, trades, "settled", None, None, None, None,
                        inclusion.block_hash, inclusion.block_number, inclusion.extrinsic_index, None,
                        settlement_remark(summary))
    back = read_back(chain, record)
    problems = []
    if not back.succeeded:
        problems.append("the settlement extrinsic did not succeed")
    if back.remark_hashes != [remark_hash(record.remark)]:
        problems.append("the on-chain remark does not commit this interval's orders root, price, trades hash")
    addresses = {n: participants.address(n) for n in {t.buyer for t in trades} | {t.seller for t in trades}
                 | {grid_operator}}
    if back.transfers != expected_transfers(trades, addresses, addresses[grid_operator]):
        problems.append("the extrinsic's transfers differ from the trades the signed orders clear to")
    return problems
