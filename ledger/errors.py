"""Errors of the ledger part, each telling the operator what to do next."""

from __future__ import annotations

from citygrid.errors import CitygridError


class LedgerError(CitygridError):
    """Base of ledger failures."""


class ChainUnreachable(LedgerError):
    """The node's WebSocket endpoint did not answer."""


class ExtrinsicFailed(LedgerError):
    """The chain refused or failed an extrinsic; nothing it did is recorded as done."""


class InsufficientFunds(ExtrinsicFailed):
    """The signing account cannot pay for the extrinsic."""


class ProofInvalid(LedgerError):
    """A reading's inclusion proof does not check out."""


class KeystoreError(LedgerError):
    """A participant's key is missing or unusable."""


class SettlementError(LedgerError):
    """An interval could not be settled; nothing of it is recorded as settled."""
