"""The settler: each interval's cleared trades paid on chain in one atomic extrinsic, exactly once.

Payments are in an Asset Hub asset (the energy currency). Every buyer approves
the settler an allowance once (`Assets.approve_transfer`), so one
`Utility.batch_all` of `Assets.transfer_approved(buyer -> seller)` calls moves
every payment of the interval (trades to sellers, fees to the grid operator)
plus a `System.remark_with_event` naming the interval and its trade ids. Each
call runs with the settler's own origin, so any failure (a buyer short of
funds or allowance) fails the batch and batch_all reverts all of it.
`Proxy.proxy` was tried first and is not atomic: it reports an inner call's
failure as an event but itself succeeds, so batch_all would keep the other
payments.

Exactly once across crashes: the signed extrinsic and its nonce are stored
before they leave the process. On restart a signed interval is looked for on
chain; if the account's nonce has not moved past it, the *same bytes* are
resubmitted, which the chain can include at most once. Only if the nonce was
consumed by something else is the interval signed again.
"""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter, Histogram
from substrateinterface import Keypair

from citygrid.ledger.chain import ChainClient, Inclusion, extrinsic_hash
from citygrid.ledger.errors import ExtrinsicFailed, KeystoreError, SettlementError
from citygrid.ledger.keystore import Keystore
from citygrid.ledger.settlement_store import Settlement, SettlementStore
from citygrid.market import Trade

log = structlog.get_logger(__name__)

SETTLED_TRADES = Counter("citygrid_settled_trades_total", "Trades settled on chain")
SETTLED_INTERVALS = Counter("citygrid_settled_intervals_total", "Intervals settled on chain")
FAILED_INTERVALS = Counter("citygrid_settlement_failures_total", "Intervals whose extrinsic failed")
SUBMIT_SECONDS = Histogram(
    "citygrid_settle_submit_seconds", "Submit-to-inclusion time of an interval's settlement extrinsic",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)

REMARK_PREFIX = "citygrid:settle:v1"
CRASH_ENV = "CITYGRID_SETTLER_CRASH_AT"  # tests only: SIGKILL the settler at a named step


def remark_text(interval_start_ms: int, trade_ids: list[str]) -> str:
    """The on-chain record of which trades an interval settled."""
    return f"{REMARK_PREFIX}:{interval_start_ms}:{len(trade_ids)}:{','.join(sorted(trade_ids))}"


def parse_remark(text: str) -> tuple[int, list[str]]:
    """(interval_start_ms, trade ids) from a settlement remark."""
    parts = text.split(":")
    if ":".join(parts[:3]) != REMARK_PREFIX or len(parts) != 6:
        raise ValueError(f"not a citygrid settlement remark: {text[:80]!r}")
    ids = parts[5].split(",") if parts[5] else []
    if len(ids) != int(parts[4]):
        raise ValueError("settlement remark's trade count does not match its ids")
    return int(parts[3]), ids


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        log.warning("settler_crash_injected", step=step)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Settler:
    """Turns intervals of trades into settled extrinsics."""

    chain: ChainClient
    store: SettlementStore
    keystore: Keystore
    settler: Keypair
    grid_operator: str
    asset_id: int
    crash: Callable[[str], None] = _crash_point
    _next_nonce: int | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """The settler account's address."""
        return self.chain.address(self.settler)

    def account(self, participant: str) -> str:
        """A participant's address: from the keystore, or the name itself if it is an address."""
        try:
            return self.chain.address(self.keystore.keypair(participant))
        except KeystoreError:
            if participant.startswith(("5", "1")) and len(participant) > 40:
                return participant
            raise

    def calls(self, interval_start_ms: int, trades: list[Trade]) -> list:
        """The batch: one transfer per trade, one fee transfer per buyer, then the remark."""
        calls = []
        fees: dict[str, int] = defaultdict(int)
        for t in sorted(trades, key=lambda t: t.trade_id):
            buyer = self.account(t.buyer)
            fees[buyer] += t.fee_total
            calls.append(self._transfer(buyer, self.account(t.seller), t.seller_receives))
        operator = self.account(self.grid_operator)
        calls += [self._transfer(b, operator, fee) for b, fee in sorted(fees.items()) if fee]
        calls.append(self.chain.compose("System", "remark_with_event", {
            "remark": remark_text(interval_start_ms, [t.trade_id for t in trades]).encode()}))
        return calls

    def _transfer(self, owner: str, dest: str, amount: int) -> object:
        return self.chain.compose("Assets", "transfer_approved", {
            "id": self.asset_id, "owner": owner, "destination": dest, "amount": amount})

    def _take_nonce(self) -> int:
        # Local counter so many extrinsics in a row need no round trip; seeded from the chain.
        if self._next_nonce is None:
            self._next_nonce = self.chain.next_nonce(self.address)
        n = self._next_nonce
        self._next_nonce += 1
        return n

    def settle(self, interval_start_ms: int, trades: list[Trade]) -> Settlement:
        """Settle one interval (or report how it was already settled)."""
        if not trades:
            raise SettlementError(f"interval {interval_start_ms} has no trades to settle")
        record = self.store.prepare(interval_start_ms, trades)
        self.crash("prepared")
        return self._drive(record)

    def recover(self) -> list[Settlement]:
        """Finish every interval left unfinished by a crash, in nonce order."""
        return [self._drive(r) for r in self.store.all()
                if r.status in ("prepared", "signed")]

    def _drive(self, record: Settlement) -> Settlement:
        if record.status in ("settled", "failed"):
            return record
        interval = record.interval_start_ms
        if record.status == "signed":
            inclusion = self._recover_signed(record)
            if inclusion is None:
                record = self.store.get(interval)  # type: ignore[assignment]
        if record.status == "prepared":
            call = self.chain.compose("Utility", "batch_all",
                                      {"calls": self.calls(interval, record.trades)})
            nonce = self._take_nonce()
            from_block = self.chain.head_number()
            ext = self.chain.sign_call(call, self.settler, nonce)
            record = self.store.mark_signed(interval, nonce, ext, extrinsic_hash(ext), from_block)
            self.crash("signed")
            inclusion = self._submit(record)
        return self._finish(record, inclusion)

    def _submit(self, record: Settlement) -> Inclusion:
        assert record.extrinsic is not None and record.extrinsic_hash is not None
        try:
            self.chain.submit_raw(record.extrinsic, f"settlement of interval {record.interval_start_ms}")
        except ExtrinsicFailed as exc:
            # The pool refused the bytes, so they can never be included: forget them, so the next
            # attempt (after the operator fixes the cause) signs afresh with the chain's nonce.
            self._next_nonce = None
            self.store.mark_prepared(record.interval_start_ms, str(exc))
            raise
        self.crash("submitted")
        with SUBMIT_SECONDS.time():
            return self.chain.wait_included(record.extrinsic_hash, record.from_block or 0)

    def _recover_signed(self, record: Settlement) -> Inclusion | None:
        """Find a signed interval on chain, resubmit its bytes, or (nonce lost) send it back to prepared."""
        assert record.extrinsic_hash is not None and record.nonce is not None
        chain_nonce = self.chain.next_nonce(self.address)
        found = self.chain.find_extrinsic(record.extrinsic_hash, record.from_block or 0)
        if found:
            log.info("settlement_found_on_chain", interval=record.interval_start_ms,
                     block=found.block_hash)
            return found
        if chain_nonce > record.nonce:
            log.warning("settlement_nonce_taken", interval=record.interval_start_ms, nonce=record.nonce)
            self.store.mark_prepared(record.interval_start_ms,
                                     f"nonce {record.nonce} was used by another extrinsic; re-signing")
            return None
        log.info("settlement_resubmitted", interval=record.interval_start_ms, nonce=record.nonce)
        return self._submit(record)

    def _finish(self, record: Settlement, inclusion: Inclusion) -> Settlement:
        self.crash("included")
        error = self.chain.dispatch_error(inclusion)
        done = self.store.mark_done(record.interval_start_ms, inclusion, error)
        if error:
            FAILED_INTERVALS.inc()
            log.error("settlement_failed", interval=record.interval_start_ms, error=error,
                      block=inclusion.block_hash)
            raise SettlementError(
                f"interval {record.interval_start_ms}'s settlement failed on chain in block "
                f"#{inclusion.block_number}: {error}. Nothing was transferred (batch_all is atomic); "
                "fund the buyers or renew their allowance (`citygrid ledger authorize`), then settle again"
            )
        SETTLED_INTERVALS.inc()
        SETTLED_TRADES.inc(len(record.trades))
        log.info("settled", interval=record.interval_start_ms, trades=len(record.trades),
                 block=inclusion.block_hash, block_number=inclusion.block_number)
        self.crash("settled")
        return done


def authorize(chain: ChainClient, participant: Keypair, settler_address: str, asset_id: int,
              allowance: int) -> Inclusion:
    """Let the settler pay up to `allowance` on the participant's behalf (signed by the participant)."""
    return chain.submit("Assets", "approve_transfer", {"id": asset_id, "delegate": settler_address,
                                                       "amount": allowance}, participant)
