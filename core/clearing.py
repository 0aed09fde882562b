"""What a grid-aware clearing publishes so anyone can re-check its prices: fee schedule and certificate.

The certificate is a competitive-equilibrium proof. It gives every market node's price (planck/Wh, in
that market: what a buyer there pays, what a seller's energy is worth there once it paid the fee of
the market it entered), the net energy each node sends its parent, the Wh each order traded and the
Wh a participant's own bid and offer supplied each other (netted before the clearing: no trade, no
fee). `citygrid.stream.market.prices.check_certificate` verifies, from the orders and the grid alone,
that markets balance, no wire carries more than its capacity, energy only flows towards the dearer
market by at least the fee, every order priced in the money traded fully and every order priced out
traded nothing. Those are the complementary-slackness conditions of the welfare LP, so a certificate
that passes also proves the trades maximise welfare.

Price rule inside the equilibrium interval: at the top market, the midpoint (rounded down) of the
interval of prices that balance it; below, a node trading with its parent takes the parent's price
shifted by the fee, and a node that does not (or whose wire is full) takes the midpoint of the prices
that balance it and keep energy from wanting to cross. The midpoint splits the marginal surplus, and
unlike the last matched pair's midpoint it never lets a rejected order want to trade.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

LEVELS = ("grid", "substation", "feeder", "house")  # market levels by depth, as gsy-e names house → grid
MAX_INT64 = 2**63 - 1


class FeeSchedule(BaseModel):
    """Constant (planck/Wh) and percentage (basis points, 1/100 %) fee of each market level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    constant: dict[str, int] = Field(default_factory=dict)
    percent_bp: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_levels(self) -> FeeSchedule:
        for table in (self.constant, self.percent_bp):
            for level, fee in table.items():
                if level not in LEVELS:
                    raise ValueError(f"unknown market level {level!r}: use one of {', '.join(LEVELS)}")
                if not 0 <= fee <= MAX_INT64 // 4:
                    raise ValueError(f"the {level} fee {fee} is out of range")
        return self

    @property
    def has_percentage(self) -> bool:
        """Whether any level charges a percentage."""
        return any(self.percent_bp.values())

    def c(self, level: str) -> int:
        """Constant fee of a level, planck/Wh."""
        return self.constant.get(level, 0)

    def p(self, level: str) -> int:
        """Percentage fee of a level, basis points."""
        return self.percent_bp.get(level, 0)


class PriceCertificate(BaseModel):
    """An interval's equilibrium prices and the quantities they clear (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_start_ms: int = Field(ge=0, le=MAX_INT64)
    mechanism: str
    grid: str  # the grid's name (SimBench code), so a checker rebuilds the same tree
    fees: FeeSchedule
    prices: dict[str, int]  # market node → price, planck/Wh
    flows: dict[str, int]  # node → Wh it sends its parent (negative: takes from it)
    accepted: dict[str, int]  # order id → Wh traded
    netted: dict[str, int]  # order id → Wh its participant's own orders supplied each other
    welfare: int  # Σ (bid - offer - path fees) x Wh over the trades, planck
