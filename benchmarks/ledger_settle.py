"""Trades settled per block: one batch_all per interval vs one extrinsic per trade.

The block's real limits come from the runtime (System.BlockWeights, BlockLength);
each extrinsic's weight from the chain's own fee estimate (payment_queryInfo).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from benchmarks.results import save
from citygrid.ledger.chain import ChainClient
from citygrid.settings import get_settings


def weight(chain: ChainClient, call: object, kp: Keypair) -> tuple[int, int, int]:
    info = chain.substrate.get_payment_info(call, kp)
    ext = chain.sign_call(call, kp, 0)
    return int(info["weight"]["ref_time"]), int(info["weight"]["proof_size"]), len(ext)


def main() -> None:
    chain = ChainClient(get_settings().chain.url)
    kp = Keypair.create_from_uri("//Eve")
    owner = chain.address(Keypair.create_from_uri("//Bob"))
    dests = [chain.address(Keypair.create_from_uri(f"//seller{i}")) for i in range(8)]
    normal = chain.substrate.get_constant("System", "BlockWeights").value["per_class"]["normal"]
    max_ref, max_pov = normal["max_total"]["ref_time"], normal["max_total"]["proof_size"]
    max_len = chain.substrate.get_constant("System", "BlockLength").value["max"]["normal"]

    def transfer(i: int) -> object:
        return chain.compose("Assets", "transfer_approved",
                             {"id": 4242, "owner": owner, "destination": dests[i % 8], "amount": 1000})

    one = weight(chain, transfer(0), kp)
    per_block_single = min(max_ref // one[0], max_pov // max(one[1], 1), max_len // one[2])
    rows = []
    for n in (100, 500, 1000):
        calls = [transfer(i) for i in range(n)]
        calls.append(chain.compose("System", "remark_with_event", {"remark": b"x" * 17 * n}))
        ref, pov, size = weight(chain, chain.compose("Utility", "batch_all", {"calls": calls}), kp)
        fits = ref <= max_ref and pov <= max_pov and size <= max_len
        rows.append({"trades_in_batch": n, "ref_time": ref, "proof_size": pov, "bytes": size,
                     "fits_in_block": fits, "ref_share": ref / max_ref, "pov_share": pov / max_pov})
    per_trade_pov = (rows[-1]["proof_size"] - rows[0]["proof_size"]) / 900
    per_trade_ref = (rows[-1]["ref_time"] - rows[0]["ref_time"]) / 900
    batch_cap = int(min(max_ref / per_trade_ref, max_pov / per_trade_pov))
    t = Table("trades in batch_all", "ref_time", "proof_size", "bytes", "fits one block")
    for r in rows:
        t.add_row(str(r["trades_in_batch"]), f"{r['ref_time']:,} ({r['ref_share']:.1%})",
                  f"{r['proof_size']:,} ({r['pov_share']:.1%})", f"{r['bytes']:,}", str(r["fits_in_block"]))
    Console().print(t)
    Console().print(f"batched: ≈{batch_cap:,} trades per block; one extrinsic per trade: "
                    f"{per_block_single:,} per block by weight (1 per block under instant sealing); "
                    f"ratio {batch_cap / per_block_single:.2f}")
    save("ledger_settle", {"rows": rows, "block_limits": {"ref_time": max_ref, "proof_size": max_pov,
                                                         "length": max_len},
                           "single_transfer": one, "per_block_single": per_block_single,
                           "batched_per_block": batch_cap})


if __name__ == "__main__":
    main()
