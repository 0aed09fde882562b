"""Fresh, funded chain accounts per test, so balances checked are not disturbed by other users of
the shared dev chain; settings and environments of settler child processes; committed offsets."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import TopicPartition
from substrateinterface import Keypair

from citygrid import kafka_clients
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.errors import ExtrinsicFailed
from citygrid.ledger.keystore import Keystore
from citygrid.ledger.participants import Participants
from citygrid.ledger.settlement import authorize
from citygrid.participants import Participant
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey

PAS = 10**10  # planck per PAS (10 decimals)
ROOT = Path(__file__).resolve().parents[3]


def submit_retrying(chain: ChainClient, module: str, fn: str, params: dict, kp: Keypair):
    """Submit as a shared dev account whose nonce other tests race for."""
    for attempt in range(8):
        try:
            return chain.submit(module, fn, params, kp)
        except ExtrinsicFailed as exc:
            if attempt == 7 or not any(s in str(exc) for s in ("Priority", "outdated", "Stale", "1014")):
                raise
            time.sleep(0.3)
    raise AssertionError("unreachable")


@dataclass
class Accounts:
    """Fresh participants, the settler and the grid operator, all funded. `keystore` holds every chain
    key and `order_keys` every order key (the test plays each participant); the settler is given only
    `path` (a keystore of its own key) and `participants_path` (the participants registry: addresses
    and order public keys)."""

    chain: ChainClient
    keystore: Keystore
    path: Path
    participants_path: Path
    names: list[str]
    asset_id: int
    order_keys: dict[str, DeviceKey]

    @property
    def participants(self) -> Participants:
        return Participants.load(self.participants_path)

    def address(self, name: str) -> str:
        return self.chain.address(self.keystore.keypair(name))

    def balances(self) -> dict[str, int]:
        """Balances of the payment asset."""
        return {n: self.chain.asset_balance(self.asset_id, self.address(n)) for n in self.names}


def make_accounts(chain: ChainClient, tmp: Path, buyers: int, sellers: int,
                  pas: int = 1000, asset: int = 1000) -> Accounts:
    """Fresh keys, funded in PAS by //Alice; a fresh payment asset run by the settler, `asset` PAS
    worth minted to each buyer, who approves the settler (with its own key) to spend up to the cap."""
    ks = Keystore()
    names = ["settler", "grid"] + [f"buyer{i}" for i in range(buyers)]
    names += [f"seller{i}" for i in range(sellers)]
    for n in names:
        ks.add(n, Keypair.generate_mnemonic())
    path = tmp / "keystore.json"
    ks.only("settler").save(path)  # the settler holds its own key and nobody else's
    participants_path = tmp / "participants.json"
    order_keys = {n: DeviceKey.generate() for n in names if n != "settler"}
    Participants({n: Participant(address=chain.address(ks.keypair(n)), order_key=k.public_key.hex())
                  for n, k in order_keys.items()}).save(participants_path)
    alice = Keypair.create_from_uri("//Alice")
    transfers = [chain.compose("Balances", "transfer_keep_alive",
                               {"dest": chain.address(ks.keypair(n)), "value": pas * PAS}) for n in names]
    submit_retrying(chain, "Utility", "batch_all", {"calls": transfers}, alice)
    settler_kp = ks.keypair("settler")
    settler = chain.address(settler_kp)
    asset_id = secrets.randbelow(2**31) + 10_000
    chain.submit("Assets", "create", {"id": asset_id, "admin": settler, "min_balance": 1}, settler_kp)
    buyers_ = [n for n in names if n.startswith("buyer")]
    mints = [chain.compose("Assets", "mint", {"id": asset_id, "beneficiary": chain.address(ks.keypair(n)),
                                              "amount": asset * PAS}) for n in buyers_]
    chain.submit("Utility", "batch_all", {"calls": mints}, settler_kp)
    cap = CitygridSettings().settlement.allowance_cap
    for n in buyers_:
        authorize(chain, ks.keypair(n), settler, asset_id, cap, cap)
    return Accounts(chain, ks, path, participants_path, names, asset_id, order_keys)


@pytest.fixture
def chain(servers: CitygridSettings) -> Iterator[ChainClient]:
    client = ChainClient(servers.chain.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def accounts_factory(servers: CitygridSettings, tmp_path_factory: pytest.TempPathFactory):
    """make_accounts bound to a module-lived chain connection."""
    chain = ChainClient(servers.chain.url)

    def make(buyers: int = 2, sellers: int = 2, pas: int = 1000, asset: int = 1000) -> Accounts:
        return make_accounts(chain, tmp_path_factory.mktemp("keys"), buyers, sellers, pas, asset)

    yield make
    chain.close()


@pytest.fixture
def settler_settings(live: CitygridSettings) -> Callable[..., CitygridSettings]:
    """Settings of a settler paying between `acc`'s enrolled accounts (its keystore holds only the
    "settler" key), SIGKILLed at step `crash_at` if one is given."""

    def make(acc: Accounts, crash_at: str = "") -> CitygridSettings:
        return live.model_copy(update={
            "paths": live.paths.model_copy(update={"keystore": acc.path,
                                                   "participants": acc.participants_path}),
            "settlement": live.settlement.model_copy(update={
                "grid_operator": "grid", "asset_id": acc.asset_id, "crash_at": crash_at,
                "evidence_wait_s": 8.0}),
        })

    return make


@pytest.fixture(scope="session")
def child_env() -> Callable[[CitygridSettings], dict[str, str]]:
    """The environment of a `python -m citygrid …` child with these settings, importing this checkout."""

    def make(s: CitygridSettings) -> dict[str, str]:
        return {**s.as_env(), "PYTHONPATH": str(ROOT / ".dev")}

    return make


@pytest.fixture(scope="session")
def committed_offsets() -> Callable[[CitygridSettings, str, str], int]:
    """A group's committed offsets on a topic, summed over partitions: how many records it finished."""

    def committed(s: CitygridSettings, topic: str, group: str) -> int:
        consumer = kafka_clients.consumer(s.kafka, group_id=group,
                                 enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
        finally:
            consumer.close()

    return committed


@pytest.fixture
def publish_trades() -> Callable[[CitygridSettings, list[tuple[int, bytes]]], None]:
    """Write (interval start, trade record) pairs to the trades topic, keyed by interval like the market."""

    def publish(s: CitygridSettings, records: list[tuple[int, bytes]]) -> None:
        producer = kafka_clients.producer(s.kafka, acks="all")
        for interval, value in records:
            producer.send(s.kafka.trades_topic, key=str(interval).encode(), value=value)
        producer.flush(30)
        producer.close(5)

    return publish
