"""The settler: each interval's cleared trades paid on chain in one atomic extrinsic, exactly once.

Payments are in an Asset Hub asset (the energy currency). Every buyer approves
the settler a bounded allowance with its own key (`Assets.approve_transfer`, at
most the operator's `settlement.allowance_cap`), so one
`Utility.batch_all` of `Assets.transfer_approved(buyer -> seller)` calls moves
every payment of the interval (trades to sellers, fees to the grid operator)
plus a `System.remark_with_event` committing the interval's signed-order root, clearing price and
trades hash (citygrid.ledger.remarks). Each
call runs with the settler's own origin, so any failure (a buyer short of
funds or allowance) fails the batch and batch_all reverts all of it.
`Proxy.proxy` was tried first and is not atomic: it reports an inner call's
failure as an event but itself succeeds, so batch_all would keep the other
payments. The settler holds no participant's key and signs with its own only. What it is given to
settle has passed `trade_backing.judge` (the feed and `settle --book` check it): only trades backed by
the buyer's and the seller's signed orders, between enrolled participants' addresses, that hash to
the market's summary of the interval.

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
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter
from substrateinterface import Keypair

from citygrid.interval_records import IntervalSummary
from citygrid.ledger import signed_once
from citygrid.ledger.chain import ChainClient, Inclusion, extrinsic_hash, inclusion_histogram
from citygrid.ledger.errors import ExtrinsicFailed, SettlementError
from citygrid.ledger.participants import Participants, load_enrolled
from citygrid.ledger.remarks import settlement_remark
from citygrid.ledger.settlement_store import Settlement, SettlementStore
from citygrid.ledger.signed_once import SignedExtrinsic
from citygrid.ledger.signer import role_keypair
from citygrid.market import Trade
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)

SETTLED_TRADES = Counter("citygrid_settled_trades_total", "Trades settled on chain")
SETTLED_INTERVALS = Counter("citygrid_settled_intervals_total", "Intervals settled on chain")
FAILED_INTERVALS = Counter("citygrid_settlement_failures_total", "Intervals whose extrinsic failed")
SUBMIT_SECONDS = inclusion_histogram("citygrid_settle_submit_seconds", "an interval's settlement extrinsic")

# The steps at which `settlement.crash_at` (a test hook) SIGKILLs the settler, in the order it takes them.
CRASH_STEPS = ("prepared", "signed", "submitted", "included", "settled")


@dataclass
class Settler:
    """Turns intervals of trades into settled extrinsics."""

    chain: ChainClient
    store: SettlementStore
    participants: Participants
    settler: Keypair
    grid_operator: str
    asset_id: int
    crash_at: str = ""  # a step of CRASH_STEPS: tests prove crash safety by a SIGKILL there
    _next_nonce: int | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, s: CitygridSettings) -> Settler:
        """Open the chain, the store, the participants file and the settler's own key; a well-known dev
        key is refused unless the chain is a dev chain (citygrid.ledger.signer)."""
        chain = ChainClient(s.chain.url)
        keypair = role_keypair(s, "settler", chain.chain_type())
        participants = load_enrolled(s.paths.participants)
        return cls(chain, SettlementStore(s.paths.settlement_store), participants, keypair,
                   s.settlement.grid_operator or "grid", s.settlement.asset_id, s.settlement.crash_at)

    def __post_init__(self) -> None:
        if self.crash_at and self.crash_at not in CRASH_STEPS:
            raise SettlementError(f"settlement.crash_at is {self.crash_at!r}; use one of "
                                  f"{', '.join(CRASH_STEPS)} (or leave it empty outside tests)")

    def crash(self, step: str) -> None:
        """SIGKILL this process if the crash_at test hook names `step`."""
        if step == self.crash_at:
            log.warning("settler_crash_injected", step=step)
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def address(self) -> str:
        """The settler account's address."""
        return self.chain.address(self.settler)

    def account(self, participant: str) -> str:
        """An enrolled participant's address (UnknownParticipant for anyone else)."""
        return self.participants.address(participant)

    def calls(self, trades: list[Trade], remark: str) -> list:
        """The batch: one transfer per trade, one fee transfer per buyer, then the remark."""
        calls = []
        fees: dict[str, int] = defaultdict(int)
        for t in sorted(trades, key=lambda t: t.trade_id):
            buyer = self.account(t.buyer)
            fees[buyer] += t.fee_total
            calls.append(self._transfer(buyer, self.account(t.seller), t.seller_receives))
        operator = self.account(self.grid_operator)
        calls += [self._transfer(b, operator, fee) for b, fee in sorted(fees.items()) if fee]
        calls.append(self.chain.compose("System", "remark_with_event", {"remark": remark.encode()}))
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

    def settle(self, summary: IntervalSummary, trades: list[Trade]) -> Settlement:
        """Settle one interval's (already judged) trades under its summary, or report how it was settled."""
        interval_start_ms = summary.interval_start_ms
        if not trades:
            raise SettlementError(f"interval {interval_start_ms} has no trades to settle")
        record = self.store.prepare(interval_start_ms, trades, settlement_remark(summary))
        self.crash("prepared")
        return self._drive(record)

    def recover(self) -> list[Settlement]:
        """Finish every interval left unfinished by a crash (or by the active instance this one took over
        from), in nonce order; the account's next nonce is read from the chain again first."""
        self._next_nonce = None
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
                                      {"calls": self.calls(record.trades, record.remark)})
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
        assert record.extrinsic is not None
        stored = SignedExtrinsic(record.nonce, record.extrinsic, record.extrinsic_hash,
                                 record.from_block or 0)
        found = signed_once.recover(self.chain, stored, self.address, lambda: self._submit(record))
        if found is None:
            self.store.mark_prepared(record.interval_start_ms,
                                     f"nonce {record.nonce} was used by another extrinsic; re-signing")
        return found

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
              allowance: int, cap: int) -> Inclusion:
    """Let the settler pay up to `allowance` on the participant's behalf, signed by the participant
    itself; an allowance above the operator's `cap` is refused before anything is signed."""
    if not 0 < allowance <= cap:
        raise SettlementError(f"an allowance of {allowance} is not within (0, {cap}]: the operator's cap "
                              "(CITYGRID_SETTLEMENT__ALLOWANCE_CAP) bounds what a settler may spend")
    return chain.submit("Assets", "approve_transfer", {"id": asset_id, "delegate": settler_address,
                                                       "amount": allowance}, participant)
