"""The enrolled market participants the settler may pay between: name → SS58 address, from a file.

The settler moves money only between these addresses. A trade naming a participant that is not
enrolled, or a raw address that is not one of theirs, is refused (the feed dead-letters it), so a
trade record alone can never send a payment to an attacker's account.
"""

from __future__ import annotations

import json
from pathlib import Path

from substrateinterface.utils.ss58 import ss58_decode

from citygrid.ledger.errors import LedgerError


class UnknownParticipant(LedgerError, reason="unknown_participant"):
    """A trade names someone who is not an enrolled participant."""


class ParticipantsFileError(LedgerError, reason="config"):
    """The participants file cannot be read or holds something that is not an address."""


class Participants:
    """Enrolled participants by name; also answers for their addresses themselves."""

    def __init__(self, addresses: dict[str, str] | None = None) -> None:
        self._by_name = dict(addresses or {})
        for name, address in self._by_name.items():
            try:
                ss58_decode(address)
            except (ValueError, TypeError, IndexError) as exc:
                raise ParticipantsFileError(f"participant {name!r}: {address!r} is not an SS58 address") \
                    from exc
        self._addresses = frozenset(self._by_name.values())

    @classmethod
    def load(cls, path: Path) -> Participants:
        """Read the participants file (JSON {name: SS58 address}); a missing file enrols no one."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ParticipantsFileError(f"cannot read the participants file {path}: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ParticipantsFileError(f"{path} must be a JSON object of participant name → SS58 address")
        return cls({str(k): v for k, v in data.items()})

    def save(self, path: Path) -> None:
        """Write the file (public data: names and addresses)."""
        Path(path).write_text(json.dumps(self._by_name, indent=1, sort_keys=True))

    def address(self, participant: str) -> str:
        """The address of an enrolled participant, named or given by its address; else UnknownParticipant."""
        if participant in self._by_name:
            return self._by_name[participant]
        if participant in self._addresses:
            return participant
        raise UnknownParticipant(f"{participant[:64]!r} is not an enrolled participant; enrol it in the "
                                 "participants file (CITYGRID_SETTLEMENT__PARTICIPANTS_FILE)")

    def __contains__(self, participant: object) -> bool:
        return participant in self._by_name or participant in self._addresses

    def __len__(self) -> int:
        return len(self._by_name)
