"""A thin, typed client over substrate-interface for what citygrid puts on chain.

It turns the library's exceptions into LedgerError subclasses with messages
an operator can act on, and reads back what was included so callers record
only what the chain really holds.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from scalecodec.base import ScaleBytes
from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from websocket import WebSocketException

from citygrid.ledger.errors import ChainUnreachable, ExtrinsicFailed, InsufficientFunds

log = structlog.get_logger(__name__)


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


class ChainClient:
    """Connection to one Substrate node."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.substrate = SubstrateInterface(url=url)
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(
                f"cannot reach the chain at {url}: {exc}; is the node running "
                "(`citygrid servers up`) and the URL right (CITYGRID_CHAIN__URL)?"
            ) from exc

    def close(self) -> None:
        """Close the WebSocket."""
        self.substrate.close()

    def address(self, keypair: Keypair) -> str:
        """The keypair's address in this chain's SS58 format."""
        return self.substrate.ss58_encode(keypair.public_key)

    def submit(self, call_module: str, call_function: str, params: dict[str, Any],
               keypair: Keypair, nonce: int | None = None) -> Inclusion:
        """Sign, submit and wait for inclusion; raise ExtrinsicFailed unless it succeeded."""
        try:
            call = self.substrate.compose_call(call_module, call_function, params)
            ext = self.substrate.create_signed_extrinsic(call=call, keypair=keypair, nonce=nonce)
            receipt = self.substrate.submit_extrinsic(ext, wait_for_inclusion=True)
        except SubstrateRequestException as exc:
            msg = str(exc)
            if "Inability to pay" in msg or ("1010" in msg and "pay" in msg.lower()):
                raise InsufficientFunds(
                    f"{self.address(keypair)} cannot pay for {call_module}.{call_function}; "
                    "fund the account"
                ) from exc
            raise ExtrinsicFailed(f"{call_module}.{call_function} refused: {msg}") from exc
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        if not receipt.is_success:
            raise ExtrinsicFailed(
                f"{call_module}.{call_function} failed in block {receipt.block_hash}: "
                f"{receipt.error_message}"
            )
        number = self.substrate.get_block_number(receipt.block_hash)
        return Inclusion(receipt.block_hash, number, receipt.extrinsic_idx)

    def _refused(self, exc: Exception, what: str, keypair: Keypair | None = None) -> ExtrinsicFailed:
        msg = str(exc)
        if "Inability to pay" in msg or ("1010" in msg and "pay" in msg.lower()):
            who = self.address(keypair) if keypair else "the signer"
            return InsufficientFunds(f"{who} cannot pay for {what}; fund the account and retry")
        if "bad signature" in msg.lower() or "badProof" in msg:
            return ExtrinsicFailed(f"{what} refused: bad signature; check the signing key")
        return ExtrinsicFailed(f"{what} refused: {msg}")

    def sign(self, call_module: str, call_function: str, params: dict[str, Any], keypair: Keypair,
             nonce: int) -> bytes:
        """A signed, immortal extrinsic's bytes; its nonce alone makes it includable at most once."""
        return self.sign_call(self.compose(call_module, call_function, params), keypair, nonce)

    def compose(self, call_module: str, call_function: str, params: dict[str, Any]) -> Any:
        """A call object, to sign or to nest in a batch or proxy call."""
        try:
            return self.substrate.compose_call(call_module, call_function, params)
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc

    def sign_call(self, call: Any, keypair: Keypair, nonce: int) -> bytes:
        """Sign a composed call with an explicit nonce."""
        try:
            ext = self.substrate.create_signed_extrinsic(call=call, keypair=keypair, nonce=nonce)
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        return bytes(ext.data.data)

    def submit_raw(self, extrinsic: bytes, what: str = "extrinsic") -> str:
        """Hand signed bytes to the node's pool without waiting; return the extrinsic hash.

        A copy already in the pool is not an error: submitting the same bytes twice is how a
        restarted settler makes sure its extrinsic was really handed over.
        """
        try:
            self.substrate.rpc_request("author_submitExtrinsic", ["0x" + extrinsic.hex()])
        except SubstrateRequestException as exc:
            if "already imported" not in str(exc).lower():
                raise self._refused(exc, what) from exc
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        return extrinsic_hash(extrinsic)

    def next_nonce(self, address: str) -> int:
        """The account's next nonce, counting extrinsics waiting in the pool."""
        return int(self._rpc("system_accountNextIndex", [address]))

    def head_number(self) -> int:
        """The best block's number."""
        return int(self._rpc("chain_getHeader", [])["number"], 16)

    def free_balance(self, address: str) -> int:
        """The account's free balance in planck."""
        try:
            info = self.substrate.query("System", "Account", [address])
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        return int(info.value["data"]["free"])

    def asset_balance(self, asset_id: int, address: str) -> int:
        """The account's balance of an Assets-pallet asset (0 if it holds none)."""
        try:
            info = self.substrate.query("Assets", "Account", [asset_id, address])
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        return int(info.value["balance"]) if info.value else 0

    def find_extrinsic(self, ext_hash: str, from_block: int) -> Inclusion | None:
        """Where an extrinsic was included, scanning blocks from `from_block` to the head."""
        for number in range(max(from_block, 0), self.head_number() + 1):
            block_hash = self._rpc("chain_getBlockHash", [number])
            exts = self._rpc("chain_getBlock", [block_hash])["block"]["extrinsics"]
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

    def events(self, inclusion: Inclusion) -> list[dict[str, Any]]:
        """The events an included extrinsic emitted, as plain dicts."""
        return [e.value for e in self.substrate.get_events(block_hash=inclusion.block_hash)
                if e.value.get("extrinsic_idx") == inclusion.extrinsic_index]

    def dispatch_error(self, inclusion: Inclusion) -> str | None:
        """None if the extrinsic succeeded, else the chain's reason."""
        for event in self.events(inclusion):
            if event["module_id"] == "System" and event["event_id"] == "ExtrinsicSuccess":
                return None
            if event["module_id"] == "System" and event["event_id"] == "ExtrinsicFailed":
                return str(event["attributes"].get("dispatch_error", event["attributes"]))[:300]
            if event["module_id"] == "Utility" and event["event_id"] == "BatchInterrupted":
                return f"batch interrupted: {str(event['attributes'])[:300]}"
        return "no ExtrinsicSuccess event"

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One raw JSON-RPC call, for data the library has no typed reader for (headers, bodies)."""
        return self._rpc(method, params)

    def remarked(self, block_hash: str) -> list[tuple[int, str, str]]:
        """(extrinsic index, sender public key 0x…, remark hash 0x…) of each System.Remarked in a block."""
        try:
            events = self.substrate.get_events(block_hash=block_hash)
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc
        out = []
        for event in events:
            v = event.value
            if (v["module_id"], v["event_id"]) == ("System", "Remarked"):
                sender = str(v["attributes"]["sender"])
                if not sender.startswith("0x"):
                    sender = "0x" + self.substrate.ss58_decode(sender)
                out.append((v.get("extrinsic_idx"), sender, str(v["attributes"]["hash"])))
        return out

    def _rpc(self, method: str, params: list[Any]) -> Any:
        try:
            return self.substrate.rpc_request(method, params)["result"]
        except (ConnectionError, OSError, WebSocketException) as exc:
            raise ChainUnreachable(f"lost the chain at {self.url}: {exc}") from exc

    def remark(self, text: str, keypair: Keypair) -> Inclusion:
        """Put a text on chain with System.remark_with_event."""
        return self.submit("System", "remark_with_event", {"remark": text.encode()}, keypair)

    def is_canonical(self, block_hash: str, block_number: int) -> bool:
        """True if the block is the one the chain holds at that height."""
        return self.substrate.get_block_hash(block_number) == block_hash

    def read_remark(self, block_hash: str, extrinsic_index: int) -> Remark:
        """Read back a remark_with_event extrinsic, checking that it succeeded."""
        try:
            block = self.substrate.get_block(block_hash=block_hash)
        except SubstrateRequestException as exc:
            raise ExtrinsicFailed(f"block {block_hash} is not known to the chain") from exc
        if block is None or extrinsic_index >= len(block["extrinsics"]):
            raise ExtrinsicFailed(f"block {block_hash} has no extrinsic {extrinsic_index}")
        ext = block["extrinsics"][extrinsic_index].value
        call = ext["call"]
        if (call["call_module"], call["call_function"]) != ("System", "remark_with_event"):
            raise ExtrinsicFailed(f"extrinsic {extrinsic_index} of {block_hash} is not a remark")
        if not self._succeeded(block_hash, extrinsic_index):
            raise ExtrinsicFailed(f"extrinsic {extrinsic_index} of {block_hash} did not succeed")
        raw = call["call_args"][0]["value"]
        text = bytes.fromhex(raw[2:]).decode() if raw.startswith("0x") else raw
        signer = ext["address"]
        if not str(signer).startswith("0x"):
            signer = "0x" + self.substrate.ss58_decode(signer)
        return Remark(signer_public_key=signer, text=text)

    def _succeeded(self, block_hash: str, extrinsic_index: int) -> bool:
        for event in self.substrate.get_events(block_hash=block_hash):
            v = event.value
            if v.get("extrinsic_idx") == extrinsic_index and v["module_id"] == "System":
                if v["event_id"] == "ExtrinsicSuccess":
                    return True
                if v["event_id"] == "ExtrinsicFailed":
                    return False
        return False


def extrinsic_hash(extrinsic: bytes) -> str:
    """The extrinsic's hash as the chain names it (blake2-256 of its encoding)."""
    return "0x" + hashlib.blake2b(extrinsic, digest_size=32).hexdigest()


def decode_extrinsic(chain: ChainClient, extrinsic: bytes) -> Any:
    """Decode signed bytes with the chain's metadata."""
    ext = chain.substrate.runtime_config.create_scale_object(
        "Extrinsic", data=ScaleBytes(extrinsic), metadata=chain.substrate.metadata)
    ext.decode()
    return ext
