"""A thin, typed client over substrate-interface for what citygrid puts on chain.

It turns the library's exceptions into LedgerError subclasses with messages
an operator can act on (one mapping, `chain_errors`), and reads back what was
included so callers record only what the chain really holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Histogram
from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from websocket import WebSocketException

from citygrid.hashing import blake2_256_hex
from citygrid.ledger.errors import ChainUnreachable, ExtrinsicFailed, InsufficientFunds

log = structlog.get_logger(__name__)

# What a dropped, refused or timed-out WebSocket raises inside substrate-interface.
NETWORK_ERRORS = (ConnectionError, OSError, WebSocketException)
# An instant-sealing dev chain includes within a second; a public chain within a few 6 s blocks.
INCLUSION_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Inclusion:
    """Where an extrinsic landed."""

    block_hash: str
    block_number: int
    extrinsic_index: int


@dataclass(frozen=True)
class Remark:
    """A successful System.remark_with_event read back from a block."""

    signer_public_key: str
    text: str


def inclusion_histogram(name: str, what: str) -> Histogram:
    """A Prometheus histogram of how long `what` takes from submission to inclusion in a block."""
    return Histogram(name, f"Submit-to-inclusion time of {what}", buckets=INCLUSION_BUCKETS)


def refusal(message: str, what: str, signer: str = "the signer") -> ExtrinsicFailed:
    """The LedgerError for a node's refusal of `what`, saying what the operator should fix."""
    if "Inability to pay" in message or ("1010" in message and "pay" in message.lower()):
        return InsufficientFunds(f"{signer} cannot pay for {what}; fund the account and retry")
    if "bad signature" in message.lower() or "badProof" in message:
        return ExtrinsicFailed(f"{what} refused: bad signature; check the signing key")
    return ExtrinsicFailed(f"{what} refused: {message}")


@contextmanager
def chain_errors(url: str, what: str | None = None, signer: str = "the signer") -> Iterator[None]:
    """Map substrate-interface's and the socket's exceptions to LedgerErrors an operator can act on.

    A lost connection becomes ChainUnreachable; a node's refusal becomes `refusal(…, what, signer)`
    when `what` names the request, and propagates unchanged otherwise.
    """
    try:
        yield
    except SubstrateRequestException as exc:
        if what is None:
            raise
        raise refusal(str(exc), what, signer) from exc
    except NETWORK_ERRORS as exc:
        raise ChainUnreachable(
            f"cannot reach the chain at {url}: {exc}; is the node running "
            "(`citygrid servers up`) and the URL right (CITYGRID_CHAIN__URL)?"
        ) from exc


class ChainClient:
    """Connection to one Substrate node."""

    def __init__(self, url: str) -> None:
        self.url = url
        with chain_errors(url):
            self.substrate = SubstrateInterface(url=url)

    def close(self) -> None:
        """Close the WebSocket."""
        self.substrate.close()

    def address(self, keypair: Keypair) -> str:
        """The keypair's address in this chain's SS58 format."""
        return self.substrate.ss58_encode(keypair.public_key)

    def submit(self, call_module: str, call_function: str, params: dict[str, Any],
               keypair: Keypair, nonce: int | None = None) -> Inclusion:
        """Sign, submit and wait for inclusion; raise ExtrinsicFailed unless it succeeded."""
        what = f"{call_module}.{call_function}"
        with chain_errors(self.url, what, self.address(keypair)):
            call = self.substrate.compose_call(call_module, call_function, params)
            ext = self.substrate.create_signed_extrinsic(call=call, keypair=keypair, nonce=nonce)
            receipt = self.substrate.submit_extrinsic(ext, wait_for_inclusion=True)
        with chain_errors(self.url):
            if not receipt.is_success:
                raise ExtrinsicFailed(f"{what} failed in block {receipt.block_hash}: {receipt.error_message}")
            number = self.substrate.get_block_number(receipt.block_hash)
        return Inclusion(receipt.block_hash, number, receipt.extrinsic_idx)

    def compose(self, call_module: str, call_function: str, params: dict[str, Any]) -> Any:
        """A call object, to sign or to nest in a batch or proxy call."""
        with chain_errors(self.url):
            return self.substrate.compose_call(call_module, call_function, params)

    def sign_call(self, call: Any, keypair: Keypair, nonce: int) -> bytes:
        """Sign a composed call with an explicit nonce: an immortal extrinsic its nonce makes
        includable at most once."""
        with chain_errors(self.url):
            ext = self.substrate.create_signed_extrinsic(call=call, keypair=keypair, nonce=nonce)
        return bytes(ext.data.data)

    def submit_raw(self, extrinsic: bytes, what: str = "extrinsic") -> str:
        """Hand signed bytes to the node's pool without waiting; return the extrinsic hash.

        A copy already in the pool is not an error: submitting the same bytes twice is how a
        restarted settler makes sure its extrinsic was really handed over.
        """
        with chain_errors(self.url, what):
            try:
                self.substrate.rpc_request("author_submitExtrinsic", ["0x" + extrinsic.hex()])
            except SubstrateRequestException as exc:
                if "already imported" not in str(exc).lower():
                    raise
        return extrinsic_hash(extrinsic)

    def next_nonce(self, address: str) -> int:
        """The account's next nonce, counting extrinsics waiting in the pool."""
        return int(self.rpc("system_accountNextIndex", [address]))

    def head_number(self) -> int:
        """The best block's number."""
        return int(self.rpc("chain_getHeader", [])["number"], 16)

    def asset_balance(self, asset_id: int, address: str) -> int:
        """The account's balance of an Assets-pallet asset (0 if it holds none)."""
        with chain_errors(self.url):
            info = self.substrate.query("Assets", "Account", [asset_id, address])
        return int(info.value["balance"]) if info.value else 0

    def find_extrinsic(self, ext_hash: str, from_block: int) -> Inclusion | None:
        """Where an extrinsic was included, scanning blocks from `from_block` to the head."""
        for number in range(max(from_block, 0), self.head_number() + 1):
            block_hash = self.rpc("chain_getBlockHash", [number])
            exts = self.rpc("chain_getBlock", [block_hash])["block"]["extrinsics"]
            for idx, raw in enumerate(exts):
                if extrinsic_hash(bytes.fromhex(raw[2:])) == ext_hash:
                    return Inclusion(block_hash, number, idx)
        return None

    def wait_included(self, ext_hash: str, from_block: int, timeout_s: float = 60.0) -> Inclusion:
        """Poll new blocks until the extrinsic is in one."""
        deadline = time.monotonic() + timeout_s
        start = from_block
        while True:
            head = self.head_number()
            found = self.find_extrinsic(ext_hash, start)
            if found:
                return found
            if time.monotonic() > deadline:
                raise ExtrinsicFailed(
                    f"extrinsic {ext_hash} not included within {timeout_s:.0f}s; is the chain producing "
                    "blocks? It is safe to retry: the same signed bytes are resubmitted"
                )
            start = head + 1
            time.sleep(0.2)

    def block_events(self, block_hash: str) -> list[dict[str, Any]]:
        """Every event of a block, as plain dicts."""
        with chain_errors(self.url):
            return [e.value for e in self.substrate.get_events(block_hash=block_hash)]

    def extrinsic_events(self, block_hash: str, extrinsic_index: int) -> list[dict[str, Any]]:
        """The events one extrinsic of a block emitted, as plain dicts."""
        return [e for e in self.block_events(block_hash) if e.get("extrinsic_idx") == extrinsic_index]

    def events(self, inclusion: Inclusion) -> list[dict[str, Any]]:
        """The events an included extrinsic emitted, as plain dicts."""
        return self.extrinsic_events(inclusion.block_hash, inclusion.extrinsic_index)

    def dispatch_error(self, inclusion: Inclusion) -> str | None:
        """None if the extrinsic succeeded, else the chain's reason."""
        return failure_reason(self.events(inclusion))

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One raw JSON-RPC call, for data the library has no typed reader for (headers, bodies)."""
        with chain_errors(self.url):
            return self.substrate.rpc_request(method, params)["result"]

    def chain_type(self) -> str | None:
        """The node's `system_chainType` ("Development", "Local", "Live", …); None if it does not say."""
        try:
            answer = self.rpc("system_chainType", [])
        except (SubstrateRequestException, KeyError):
            return None
        return answer if isinstance(answer, str) else None

    def remarked(self, block_hash: str) -> list[tuple[int, str, str]]:
        """(extrinsic index, sender public key 0x…, remark hash 0x…) of each System.Remarked in a block."""
        out = []
        for v in self.block_events(block_hash):
            if (v["module_id"], v["event_id"]) == ("System", "Remarked"):
                out.append((v.get("extrinsic_idx"), self._public_key(v["attributes"]["sender"]),
                            str(v["attributes"]["hash"])))
        return out

    def _public_key(self, account: object) -> str:
        # Events and extrinsics name accounts as SS58 addresses or as 0x public keys, by runtime.
        text = str(account)
        return text if text.startswith("0x") else "0x" + self.substrate.ss58_decode(text)

    def remark(self, text: str, keypair: Keypair) -> Inclusion:
        """Put a text on chain with System.remark_with_event."""
        return self.submit("System", "remark_with_event", {"remark": text.encode()}, keypair)

    def is_canonical(self, block_hash: str, block_number: int) -> bool:
        """True if the block is the one the chain holds at that height."""
        with chain_errors(self.url):
            return self.substrate.get_block_hash(block_number) == block_hash

    def read_remark(self, block_hash: str, extrinsic_index: int) -> Remark:
        """Read back a remark_with_event extrinsic, checking that it succeeded."""
        with chain_errors(self.url, f"reading block {block_hash}"):
            block = self.substrate.get_block(block_hash=block_hash)
        if block is None or extrinsic_index >= len(block["extrinsics"]):
            raise ExtrinsicFailed(f"block {block_hash} has no extrinsic {extrinsic_index}")
        ext = block["extrinsics"][extrinsic_index].value
        call = ext["call"]
        if (call["call_module"], call["call_function"]) != ("System", "remark_with_event"):
            raise ExtrinsicFailed(f"extrinsic {extrinsic_index} of {block_hash} is not a remark")
        if failure_reason(self.extrinsic_events(block_hash, extrinsic_index)) is not None:
            raise ExtrinsicFailed(f"extrinsic {extrinsic_index} of {block_hash} did not succeed")
        raw = call["call_args"][0]["value"]
        text = bytes.fromhex(raw[2:]).decode() if raw.startswith("0x") else raw
        return Remark(signer_public_key=self._public_key(ext["address"]), text=text)


def failure_reason(events: list[dict[str, Any]]) -> str | None:
    """None if an extrinsic's events show it succeeded, else the chain's reason."""
    for event in events:
        if event["module_id"] == "System" and event["event_id"] == "ExtrinsicSuccess":
            return None
        if event["module_id"] == "System" and event["event_id"] == "ExtrinsicFailed":
            return str(event["attributes"].get("dispatch_error", event["attributes"]))[:300]
        if event["module_id"] == "Utility" and event["event_id"] == "BatchInterrupted":
            return f"batch interrupted: {str(event['attributes'])[:300]}"
    return "no ExtrinsicSuccess event"


def extrinsic_hash(extrinsic: bytes) -> str:
    """The extrinsic's hash as the chain names it (blake2-256 of its encoding)."""
    return blake2_256_hex(extrinsic)
