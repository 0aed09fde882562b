"""A thin, typed client over substrate-interface for what citygrid puts on chain.

It turns the library's exceptions into LedgerError subclasses with messages
an operator can act on, and reads back what was included so callers record
only what the chain really holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
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
