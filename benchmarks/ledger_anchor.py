"""Readings anchored per extrinsic: one Merkle root for 1,000,000 readings vs one extrinsic per reading.

Measures on the real dev chain the submit-to-inclusion time of one anchor
remark, and locally the tree build and proof verification for 1M leaves.
"""

from __future__ import annotations

import os
import random
import time

from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from benchmarks.results import save
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.remarks import anchor_remark
from citygrid.merkle import MerkleTree, verify_proof
from citygrid.settings import get_settings

LEAVES = 1_000_000


def main() -> None:
    leaves = [os.urandom(120) for _ in range(LEAVES)]  # the size of a signed reading envelope
    t0 = time.perf_counter()
    tree = MerkleTree(leaves)
    build_s = time.perf_counter() - t0
    picks = random.Random(1).sample(range(LEAVES), 1000)
    proofs = [(leaves[i], tree.proof(i)) for i in picks]
    t0 = time.perf_counter()
    assert all(verify_proof(leaf, p, tree.root) for leaf, p in proofs)
    verify_s = (time.perf_counter() - t0) / len(proofs)

    chain = ChainClient(get_settings().chain.url)
    kp = Keypair.create_from_uri("//Dave")
    samples = []
    for _ in range(3):
        t0 = time.perf_counter()
        chain.remark(anchor_remark(0, LEAVES, tree.root), kp)
        samples.append(time.perf_counter() - t0)
    per_ext_s = min(samples)
    # One extrinsic per reading needs LEAVES extrinsics; one root needs one.
    ratio = LEAVES / 1
    rows = {"readings_per_extrinsic": LEAVES, "per_extrinsic_s": per_ext_s, "tree_build_s": build_s,
            "proof_verify_us": verify_s * 1e6, "proof_steps": len(proofs[0][1]),
            "extrinsics_per_reading_baseline": 1, "ratio_vs_one_per_reading": ratio,
            "baseline_time_for_1M_s": per_ext_s * LEAVES, "root_time_s": per_ext_s + build_s,
            "time_ratio": per_ext_s * LEAVES / (per_ext_s + build_s)}
    t = Table("metric", "value")
    for k, v in rows.items():
        t.add_row(k, f"{v:,.3f}" if isinstance(v, float) else f"{v:,}")
    Console().print(t)
    save("ledger_anchor", {"note": "machine under concurrent load", **rows})


if __name__ == "__main__":
    main()
