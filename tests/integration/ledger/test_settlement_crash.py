"""A settler SIGKILLed at each step and restarted settles every trade exactly once (real dev chain)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from market_support import backed_interval

from citygrid.interval_records import PublishedInterval
from citygrid.ledger.settlement import CRASH_STEPS
from citygrid.ledger.settlement_history import expected_transfers, read_back
from citygrid.ledger.settlement_store import SettlementStore

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[3]
STEPS = list(CRASH_STEPS)


def _interval(interval: int, accounts) -> PublishedInterval:
    pairs = [("buyer0", "seller0", 1200), ("buyer0", "seller1", 300), ("buyer1", "seller1", 800)]
    return backed_interval(interval, pairs, accounts.order_keys, 3_000_000, 200_000)


def _settle(env: dict[str, str], book_file: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "citygrid", "ledger", "settle", "--book", str(book_file)]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def accounts(accounts_factory):
    return accounts_factory(buyers=2, sellers=2)


@pytest.mark.parametrize("step", STEPS)
def test_killed_settler_settles_exactly_once(accounts, settler_settings, child_env, step: str,
                                             tmp_path: Path) -> None:
    interval = 1_000_000 + STEPS.index(step)
    published = _interval(interval, accounts)
    trades = published.trades
    trades_file = tmp_path / "book.json"
    trades_file.write_text(f"[{published.model_dump_json()}]")
    before = accounts.balances()

    crashed = _settle(child_env(settler_settings(accounts, crash_at=step)), trades_file)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    s = settler_settings(accounts)
    for _ in range(2):  # the restart settles; a further run must change nothing
        done = _settle(child_env(s), trades_file)
        assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]

    after = accounts.balances()
    owed = {n: 0 for n in accounts.names}
    for t in trades:
        owed[t.buyer] -= t.buyer_pays
        owed[t.seller] += t.seller_receives
        owed["grid"] += t.fee_total
    for name in accounts.names:
        assert after[name] - before[name] == owed[name], name

    store = SettlementStore(s.paths.settlement_store)
    record = store.get(interval)
    assert record is not None and record.status == "settled"
    addresses = {n: accounts.address(n) for n in accounts.names}
    back = read_back(accounts.chain, record)
    expected = expected_transfers(trades, addresses, addresses["grid"])
    assert back.problem(record, expected) is None
