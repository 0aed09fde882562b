"""Reading a settlement back from the chain's events, so what the store says can be checked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from citygrid.ledger.chain import ChainClient, Inclusion
from citygrid.ledger.remarks import remark_hash
from citygrid.ledger.settlement_store import Settlement
from citygrid.market import Trade


@dataclass(frozen=True)
class OnChainSettlement:
    """What the settlement's block says happened."""

    succeeded: bool
    transfers: Counter  # (from, to, amount) → times
    remark_hashes: list[str]

    def matches(self, record: Settlement, expected: Counter | None = None) -> bool:
        """True if the chain shows exactly this interval's remark (and transfers, if given)."""
        return self.problem(record, expected) is None

    def problem(self, record: Settlement, expected: Counter | None = None) -> str | None:
        """What differs, or None."""
        if not self.succeeded:
            return "the extrinsic did not succeed"
        if self.remark_hashes != [remark_hash(record.remark)]:
            return "the remark (orders root, price, trades hash) differs"
        if expected is not None and self.transfers != expected:
            return "the transfers differ from the trades"
        return None


def read_back(chain: ChainClient, record: Settlement) -> OnChainSettlement:
    """The transfers and remark the settlement's extrinsic emitted."""
    assert record.block_hash is not None and record.block_number is not None
    inclusion = Inclusion(record.block_hash, record.block_number, record.extrinsic_index or 0)
    transfers: Counter = Counter()
    remarks: list[str] = []
    for e in chain.events(inclusion):
        a = e["attributes"]
        if (e["module_id"], e["event_id"]) == ("Assets", "Transferred"):
            transfers[(a["from"], a["to"], int(a["amount"]))] += 1
        elif (e["module_id"], e["event_id"]) == ("System", "Remarked"):
            remarks.append(a["hash"])
    return OnChainSettlement(chain.dispatch_error(inclusion) is None, transfers, remarks)


def expected_transfers(trades: list[Trade], address: dict[str, str], grid_operator: str) -> Counter:
    """The (from, to, amount) transfers that settling `trades` must produce."""
    out: Counter = Counter()
    fees: Counter = Counter()
    for t in trades:
        out[(address[t.buyer], address[t.seller], t.seller_receives)] += 1
        fees[address[t.buyer]] += t.fee_total
    for buyer, fee in fees.items():
        if fee:
            out[(buyer, grid_operator, fee)] += 1
    return out
