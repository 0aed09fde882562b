"""The market's participants: one registry every part reads (the market, a participant's bidder, the settler).

A participant (a household, a shop, the grid operator) is enrolled once, by name, with:
- `address`: its chain account (SS58), the only account the settler pays it at or takes payment from;
- `order_key`: the ed25519 public key (hex) its orders must be signed with (its bidder holds the secret);
- `bus`: the grid bus it is connected at, which says which feeder and grid levels its trades cross;
- `devices`: the meters and PV inverters whose forecasts make its orders;
- `buy_limit` / `sell_limit`: what its bidder offers to pay / accept per Wh (planck);
- `battery`: its home battery, if any: the physical limits its bidder schedules it within.

The file (`paths.participants`, JSON {name: entry}) is public data: addresses and public keys only, never
a secret. Names are short and plain (letters, digits, `_ . -`) because every order id starts with
`<participant>:` (citygrid.market.order_id_prefix), which keeps one participant's ids from ever naming
another's order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from citygrid.errors import ConfigError
from citygrid.storage import atomic_write

MAX_INT64 = 2**63 - 1
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# SS58 is base58 (no 0, O, I, l) of 35-50 characters for the account formats Substrate uses; the ledger
# decodes it fully (checksum, prefix) when the settler loads the registry.
SS58_PATTERN = r"^[1-9A-HJ-NP-Za-km-z]{35,50}$"
_NAME = re.compile(NAME_PATTERN)


class UnknownParticipant(ConfigError, reason="unknown_participant"):
    """A name (or address) that is not an enrolled participant."""


class Battery(BaseModel):
    """A participant's home battery: the physical limits its scheduler keeps to (citygrid.stream.battery).

    The fields are SimBench's storage columns (max_e_mwh, max_p_mw, efficiency_percent, soc bounds,
    self-discharge_percent_per_day) in a household's units. SimBench's own storage units (the
    "PV_Storage" of its future scenarios) hold 2 h of their power, charge and discharge at 95 % each
    way and lose 0.13 % a day: the defaults here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity_wh: float = Field(gt=0)
    power_w: float = Field(gt=0)  # the most it charges or discharges, at its AC terminals
    efficiency: float = Field(default=0.95, gt=0, le=1)  # each way: the round trip keeps efficiency²
    min_soc: float = Field(default=0.0, ge=0, le=1)
    max_soc: float = Field(default=1.0, ge=0, le=1)
    self_discharge_per_day: float = Field(default=0.0013, ge=0, lt=1)

    @model_validator(mode="after")
    def _soc_bounds(self) -> Battery:
        if self.min_soc >= self.max_soc:
            raise ValueError(f"min_soc {self.min_soc} must be below max_soc {self.max_soc}")
        return self


class Participant(BaseModel):
    """One enrolled participant (see the module docstring for each field's use)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(pattern=SS58_PATTERN)
    order_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    bus: str | None = Field(default=None, max_length=64)
    devices: tuple[str, ...] = ()
    buy_limit: int = Field(default=0, ge=0, le=MAX_INT64)
    sell_limit: int = Field(default=0, ge=0, le=MAX_INT64)
    battery: Battery | None = None

    @property
    def order_public_key(self) -> bytes:
        """The 32-byte ed25519 key its orders verify under."""
        return bytes.fromhex(self.order_key)


class Participants:
    """The enrolled participants by name, with the checks every reader needs (unique devices, names)."""

    def __init__(self, entries: dict[str, Participant] | None = None) -> None:
        self._by_name = dict(entries or {})
        for name in self._by_name:
            if not _NAME.match(name):
                raise ConfigError(f"participant name {name[:80]!r} must match {NAME_PATTERN}")
        self._by_address = {p.address: n for n, p in self._by_name.items()}
        self._owner: dict[str, str] = {}
        for name, p in self._by_name.items():
            for device in p.devices:
                if self._owner.setdefault(device, name) != name:
                    raise ConfigError(f"device {device} is listed under both {self._owner[device]!r} and "
                                      f"{name!r}; give each device to one participant")

    @classmethod
    def load(cls, path: Path) -> Participants:
        """Read the registry; a missing file enrols no one (ConfigError, saying what to fix, if malformed)."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            return cls({str(k): Participant.model_validate(v) for k, v in raw.items()})
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            raise ConfigError(
                f"participants registry {path} is unreadable: {str(exc)[:300]}; expected JSON "
                '{name: {"address", "order_key", "bus", "devices", "buy_limit", "sell_limit", "battery"}} '
                "(CITYGRID_PATHS__PARTICIPANTS; `citygrid market enrol` writes it)") from exc

    def save(self, path: Path) -> None:
        """Write the registry atomically (public data)."""
        atomic_write(Path(path), json.dumps(
            {n: p.model_dump(mode="json") for n, p in sorted(self._by_name.items())}, indent=1))

    def with_entry(self, name: str, entry: Participant) -> Participants:
        """A registry with `name` enrolled (or re-enrolled) as `entry`."""
        return Participants({**self._by_name, name: entry})

    def get(self, name: str) -> Participant:
        """The entry of an enrolled participant, else UnknownParticipant."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownParticipant(f"{name[:64]!r} is not an enrolled participant; enrol it with "
                                     "`citygrid market enrol` (CITYGRID_PATHS__PARTICIPANTS)") from None

    def name_of(self, participant: str) -> str:
        """The enrolled name of a participant given by name or by its own address; else UnknownParticipant."""
        if participant in self._by_name:
            return participant
        if participant in self._by_address:
            return self._by_address[participant]
        raise UnknownParticipant(f"{participant[:64]!r} is not an enrolled participant; enrol it with "
                                 "`citygrid market enrol` (CITYGRID_PATHS__PARTICIPANTS)")

    def address(self, participant: str) -> str:
        """The SS58 address of a participant named or given by its address; else UnknownParticipant."""
        return self._by_name[self.name_of(participant)].address

    def owner_of(self, device: str) -> str | None:
        """The participant a device belongs to, if any."""
        return self._owner.get(device)

    def devices(self) -> dict[str, str]:
        """Device id → its participant."""
        return dict(self._owner)

    def __contains__(self, participant: object) -> bool:
        return participant in self._by_name or participant in self._by_address

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)
