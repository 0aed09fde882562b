"""What the market agent does, without a broker: signed orders booked or refused with their reason;
ticks in the log clear books; the same log read by another worker (after a kill) clears the same."""

from __future__ import annotations

import secrets

from prometheus_client import REGISTRY

from citygrid.market import Mechanism, Order, Side
from citygrid.participants import Participant, Participants
from citygrid.settings import MarketSettings
from citygrid.signed_orders import SignedOrder
from citygrid.signing import DeviceKey
from citygrid.stream.market import clear
from citygrid.stream.market.auction import MarketPlan
from citygrid.stream.market.book import Books, MarketRules, unseen
from citygrid.stream.market.exchange import (
    Refused,
    expected_partition,
    order_key,
    take_record,
    tick_record,
)

M = MarketSettings(interval_s=900, gate_s=5.0)
INTERVAL_MS = M.interval_s * 1000
T0 = 1_750_000_000_000 - 1_750_000_000_000 % INTERVAL_MS
GATE = T0 + INTERVAL_MS + 5_000
ADDRESS = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
KEYS = {n: DeviceKey.generate() for n in ("alice", "bob", "carol", "dave")}
STATE_KEY = secrets.token_bytes(32)
PARTICIPANTS = Participants(
    {n: Participant(address=ADDRESS, order_key=k.public_key.hex()) for n, k in KEYS.items()})
RULES = MarketRules(INTERVAL_MS, 5_000, 4, STATE_KEY, PARTICIPANTS, MarketPlan.from_settings(M, PARTICIPANTS))
PART = expected_partition(order_key(T0), RULES.partitions)


def _signed(who: str, side: Side, wh: int, limit: int, nonce: int = 1, start: int = T0,
            expires: int | None = None, key: str | None = None) -> bytes:
    order = Order(order_id=f"{who}:{start}:{side.value}", participant=who, side=side, wh=wh, limit=limit,
                  interval_start_ms=start, nonce=nonce, expires_ms=expires or start + 2 * INTERVAL_MS)
    return SignedOrder.sign(order, KEYS[key or who]).encode()


def _feed(books: Books, records: list[tuple[bytes, bytes]], part: int = PART) -> list:
    """Run records through the market as its agent does; the cleared intervals and refusal reasons."""
    out = []
    for key, raw in records:
        try:
            out += take_record(books, RULES, part, key, raw, M)
        except Refused as exc:
            out.append(exc.reason)
    return out


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_market_orders_refused_total", {"reason": reason}) or 0.0


def _tick(ms: int) -> tuple[bytes, bytes]:
    return b"tick", tick_record(STATE_KEY, ms)


BOOK = [(order_key(T0), _signed("alice", Side.BID, 700, 3_500_000)),
        (order_key(T0), _signed("bob", Side.OFFER, 900, 600_000)),
        (order_key(T0), _signed("carol", Side.BID, 300, 2_000_000)),
        (order_key(T0), _signed("alice", Side.BID, 800, 3_500_000, nonce=2)),  # a revision
        (order_key(T0), _signed("dave", Side.OFFER, 200, 1_900_000))]


def test_a_tick_past_the_gate_clears_the_book_into_the_auctions_trades_once() -> None:
    books = Books({}, STATE_KEY)
    assert _feed(books, [*BOOK, _tick(GATE - 1)]) == []  # the gate has not passed yet
    [cleared] = _feed(books, [_tick(GATE)])
    orders = [SignedOrder.decode(raw).unverified_order() for _, raw in BOOK[1:]]
    assert cleared.trades == clear(orders, M.grid_fee, Mechanism(M.mechanism), T0).trades
    assert cleared.trades and cleared.summary.order_count == 4 == len(cleared.orders)
    assert cleared.summary.trade_count == len(cleared.trades)
    assert _feed(books, [_tick(GATE + 1)]) == []  # cleared once only
    assert books.table.keys() == {f"p|{PART}".encode()}  # the book is gone, the clock stays


def test_unsigned_forged_replayed_expired_late_and_misrouted_orders_are_refused_and_counted() -> None:
    books = Books({}, STATE_KEY)
    before = {r: _refused(r) for r in ("unsigned", "bad_signature", "replayed", "expired", "late",
                                       "misrouted", "malformed", "forged_tick")}
    bare = Order(order_id="alice:x", participant="alice", side=Side.BID, wh=1, limit=1,
                 interval_start_ms=T0, expires_ms=T0 + 2 * INTERVAL_MS).model_dump_json().encode()
    got = _feed(books, [
        (order_key(T0), bare),
        (order_key(T0), _signed("alice", Side.BID, 10, 1, key="bob")),
        (order_key(T0), _signed("alice", Side.BID, 10, 1, nonce=5)),
        (order_key(T0), _signed("alice", Side.BID, 10, 1, nonce=5)),  # the same bytes again
        (order_key(T0), _signed("alice", Side.BID, 10, 1, nonce=4)),  # an older revision
        (order_key(T0), _signed("bob", Side.BID, 10, 1, expires=T0 + INTERVAL_MS - 1)),
        (b"other-key", _signed("carol", Side.BID, 10, 1)),
        (order_key(T0), _signed("dave", Side.BID, 10, 1, start=T0 + 1)),
        (b"tick", b"CGS1" + b"\x00" * 40),  # a tick not sealed by a worker
        _tick(GATE),
        (order_key(T0), _signed("carol", Side.BID, 10, 1)),  # after the gate
    ])
    assert [r for r in got if isinstance(r, str)] == [
        "unsigned", "bad_signature", "replayed", "replayed", "expired", "misrouted", "malformed",
        "forged_tick", "late"]
    for reason, n in (("replayed", 2), ("unsigned", 1), ("late", 1), ("misrouted", 1), ("forged_tick", 1)):
        assert _refused(reason) == before[reason] + n, reason
    # The order on another partition than its key's is refused too: one interval, one book.
    other = (PART + 1) % RULES.partitions
    assert _feed(Books({}, STATE_KEY), [BOOK[0]], part=other) == ["misrouted"]


def test_another_worker_taking_the_partition_over_clears_the_same_trades() -> None:
    log = [*BOOK[:3], _tick(T0 + 10), *BOOK[3:], _tick(GATE)]
    [alone] = _feed(Books({}, STATE_KEY), log)
    # Worker A handles the first four records, writing its table (the changelog), and is killed before
    # committing the last two offsets; B restores the table and re-reads from the committed offset.
    changelog: dict[bytes, bytes] = {}
    _feed(Books(changelog, STATE_KEY), log[:4])
    survivor = Books(dict(changelog), STATE_KEY)
    redelivered = _feed(survivor, log[2:])
    assert redelivered[0] == "replayed"  # what A had booked comes again and changes nothing
    [again] = [c for c in redelivered if not isinstance(c, str)]
    assert again.trades == alone.trades and again.summary == alone.summary


def test_changelog_values_not_sealed_by_the_workers_are_refused_counted_and_never_booked() -> None:
    books = Books({}, STATE_KEY)
    _feed(books, BOOK)
    before = REGISTRY.get_sample_value("citygrid_market_state_refused_total") or 0.0
    order_keys = [k for k in books.table if k.startswith(b"o|")]
    forged = dict(books.table) | {k: b"CGS1" + b"\x00" * 32 + books.table[k][36:] for k in order_keys[:2]}
    [cleared] = _feed(Books(forged, STATE_KEY), [_tick(GATE)])
    assert cleared.summary.order_count == len(order_keys) - 2
    assert REGISTRY.get_sample_value("citygrid_market_state_refused_total") == before + 2


def test_the_books_know_their_last_record_so_redeliveries_pass_and_skipped_records_are_named() -> None:
    changelog: dict[bytes, bytes] = {}
    books = Books(changelog, STATE_KEY)
    assert unseen(books.clock(PART).offset, 0) == range(0)  # a fresh partition: nothing to make up
    for offset in (0, 1, 2):
        books.taken(PART, offset)
    books.taken(PART, 1)  # never backwards
    survivor = Books(dict(changelog), STATE_KEY)  # another worker restores the same state
    last = survivor.clock(PART).offset
    assert last == 2
    assert unseen(last, 2) is None and unseen(last, 0) is None  # redelivered: already in the books
    assert unseen(last, 3) == range(0)  # follows on
    assert unseen(last, 7) == range(3, 7)  # the consumer skipped 3..6: read them first
    assert Books({}, STATE_KEY).clock(PART).offset == -1
