"""Who trades for which device, at what limits, and each participant's position from its forecasts.

A participant (a household, a shop) owns devices: meters that consume and PV
inverters that generate. The learner forecasts each device's power for the
next interval; a participant's net position is its generation minus its
consumption over that interval, which `order_from_forecast` turns into an
offer (surplus) or a bid (deficit) at the participant's stated limits. Pure
logic, so the Faust agent that feeds it stays thin.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from citygrid.market import Order
from citygrid.records import Forecast
from citygrid.stream.market.book import order_from_forecast
from citygrid.stream.market.errors import ParticipantsConfigError

# The reading kinds whose power is generation; every other energy kind (meters) is consumption.
GENERATION_KINDS = frozenset({"pv"})


class Participant(BaseModel):
    """One market participant: its price limits (planck per Wh) and its devices."""

    buy_limit: int = Field(ge=0, description="most it pays per Wh when its forecast is short")
    sell_limit: int = Field(ge=0, description="least it accepts per Wh for a forecast surplus")
    devices: list[str]


class ParticipantsConfig(BaseModel):
    """The participants file: settlement name (as in the keystore) → participant."""

    participants: dict[str, Participant]

    def by_device(self) -> dict[str, str]:
        """Device id → participant name; a device may belong to one participant only."""
        owner: dict[str, str] = {}
        for name, p in self.participants.items():
            for device in p.devices:
                if owner.setdefault(device, name) != name:
                    raise ParticipantsConfigError(
                        f"device {device} is listed under both {owner[device]!r} and {name!r}; "
                        "give each device to one participant in the participants file")
        return owner


def load_participants(path: Path) -> ParticipantsConfig:
    """Read and check the participants file."""
    try:
        config = ParticipantsConfig.model_validate_json(path.read_text())
    except OSError as exc:
        raise ParticipantsConfigError(
            f"cannot read the participants file {path}: {exc}; "
            "fix CITYGRID_MARKET__PARTICIPANTS_FILE") from exc
    except ValidationError as exc:
        raise ParticipantsConfigError(
            f"participants file {path} is malformed: {str(exc)[:300]}; expected "
            '{"participants": {name: {"buy_limit", "sell_limit", "devices": [...]}}}') from exc
    config.by_device()
    return config


class ForecastPositions:
    """Each participant's latest forecast per device and interval, and the order it implies."""

    def __init__(self, config: ParticipantsConfig, interval_s: int) -> None:
        self.config = config
        self.interval_ms = interval_s * 1000
        self.wh_per_kw = interval_s / 3.6  # kW held over one interval, in Wh
        self.owner = config.by_device()
        self.kw: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)

    def update(self, forecast: Forecast) -> tuple[str, int, Order | None] | None:
        """(participant, interval start, its order or None if balanced); None if the forecast is not ours.

        A device's newer forecast for the same interval replaces its older one.
        """
        participant = self.owner.get(forecast.device or "") if forecast.scope == "device" else None
        if participant is None or forecast.value != "p_kw":
            return None
        start = forecast.ts_ms - forecast.ts_ms % self.interval_ms
        # A model can forecast slightly below zero; the kind, not the sign, says which way power flows.
        kw = max(0.0, forecast.forecast)
        position = self.kw[(participant, start)]
        position[forecast.device] = kw if forecast.kind in GENERATION_KINDS else -kw
        net_wh = sum(position.values()) * self.wh_per_kw
        p = self.config.participants[participant]
        return participant, start, order_from_forecast(participant, start, net_wh, p.buy_limit, p.sell_limit)

    def forget_before(self, start_ms: int) -> None:
        """Drop positions of intervals already cleared, so memory stays bounded."""
        for key in [k for k in self.kw if k[1] < start_ms]:
            del self.kw[key]
