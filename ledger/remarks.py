"""The texts citygrid puts on chain with System.remark_with_event, and how the chain's events name them.

Each is a readable, versioned line, so anyone reading the chain can tell what it records:
`citygrid:anchor:v1:<interval start ms>:<leaf count>:<Merkle root hex>` anchors a batch of readings;
`citygrid:settle:v2:<interval start ms>:<trade count>:<orders root>:<price digest>:<trades hash>` commits
what an interval's settlement paid for: the Merkle root of the interval's signed orders, the digest of
its clearing price and the hash of its trade list, exactly as the market's summary states them
(citygrid.interval_records), so `citygrid market audit` can tie the payments back to signed orders.
(v1, `…:settle:v1:<interval>:<count>:<sorted trade ids>`, named trade ids only.)
System.Remarked carries only the BLAKE2b-256 hash of the text.
"""

from __future__ import annotations

from citygrid.hashing import blake2_256_hex
from citygrid.interval_records import IntervalSummary

ANCHOR_PREFIX = "citygrid:anchor:v1"
SETTLEMENT_PREFIX = "citygrid:settle:v2"


def anchor_remark(interval_start_ms: int, count: int, root: bytes) -> str:
    """What the anchorer puts on chain for one batch: its interval, size and Merkle root."""
    return f"{ANCHOR_PREFIX}:{interval_start_ms}:{count}:{root.hex()}"


def parse_anchor_remark(text: str) -> tuple[int, int, bytes]:
    """(interval_start_ms, count, root) from a remark written by `anchor_remark`."""
    prefix, _, rest = text.rpartition(":")
    head = prefix.split(":")
    if ":".join(head[:3]) != ANCHOR_PREFIX or len(head) != 5:
        raise ValueError(f"not a citygrid anchor remark: {text[:80]!r}")
    return int(head[3]), int(head[4]), bytes.fromhex(rest)


def settlement_remark(summary: IntervalSummary) -> str:
    """The on-chain commitment of an interval's settlement: its orders root, price and trades hash."""
    return (f"{SETTLEMENT_PREFIX}:{summary.interval_start_ms}:{summary.trade_count}:{summary.orders_root}:"
            f"{summary.price.digest()}:{summary.trades_hash}")


def remark_hash(text: str) -> str:
    """The hash System.Remarked carries for a remark."""
    return blake2_256_hex(text.encode())
