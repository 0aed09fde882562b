"""The settler's view of the participants registry (citygrid.participants): addresses fully checked.

The settler moves money only between enrolled participants' addresses. The core registry checks an
address's shape; here each is decoded as SS58 (checksum included) when the settler loads the file,
so a typo'd or forged address is refused at start, never paid.
"""

from __future__ import annotations

from pathlib import Path

from substrateinterface.utils.ss58 import ss58_decode

from citygrid.errors import ConfigError
from citygrid.ledger.errors import LedgerError
from citygrid.participants import Participants, UnknownParticipant

__all__ = ["Participants", "ParticipantsFileError", "UnknownParticipant", "checked", "load_enrolled"]


class ParticipantsFileError(LedgerError, reason="config"):
    """The participants registry cannot be read or holds something that is not an SS58 address."""


def checked(participants: Participants) -> Participants:
    """`participants`, once every address decodes as SS58; else ParticipantsFileError naming the entry."""
    for name in participants:
        address = participants.address(name)
        try:
            ss58_decode(address)
        except (ValueError, TypeError, IndexError) as exc:
            raise ParticipantsFileError(f"participant {name!r}: {address!r} is not an SS58 address") from exc
    return participants


def load_enrolled(path: Path) -> Participants:
    """The registry at `path` with every address checked (a missing file enrols no one)."""
    try:
        return checked(Participants.load(path))
    except ConfigError as exc:
        raise ParticipantsFileError(str(exc)) from exc
