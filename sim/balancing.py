"""The balancing simulation: a SimBench grid's year, its participants bidding, clearing and delivering.

In-process and time-stepped, running the code the live system runs:
1. the workers' forecaster (`citygrid.stream.forecasting.observe`, the settings' model) over every
   quarter-hour of the year, so each device has, at each interval, the P10/P50/P90 and point forecast
   made one step before. Devices replaying the same SimBench profile are scaled copies, so each
   distinct profile is forecast once and scaled (the forecaster is scale-free: it learns in units of
   the series' level), as the prequential report does;
2. every participant's order rule (`citygrid.stream.market.participants.tradable_wh` and
   `order_from_forecast`, what its bidder calls) and, with batteries, its battery agent's plan
   (`citygrid.stream.battery`);
3. the clearing on the grid's own market tree (`citygrid.stream.market.auction.MarketPlan`), with a
   supplier at the grid's connection to the MV grid that sells at a tariff and buys at a feed-in
   price without limit (gsy-e's "market maker"), so every order finds a counterparty and the
   imbalance is the bidding's, not a thin market's;
4. delivery: each battery tracks its trade (`BatteryAgent.track`), the meter shows the rest, and the
   delivery check's own `judge` (citygrid.ledger.delivery) flags each traded interval.

Participants: one per bus, owning the loads and PV units SimBench places there. Batteries: SimBench's
storage units where the grid has them (the scenario-1/2 codes), else one per PV owner in the shape of
SimBench's PV_Storage units (power = the PV's rating, 2 h of it, 95 % each way, 0.13 %/day).
The market is cleared on sampled days only (`Sample`: blocks of days spread over the year) because
one clearing of a 60-participant grid takes ~15 ms on this machine; the forecasters learn every step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from citygrid.clearing import FeeSchedule
from citygrid.ledger.delivery import DeviceEnergy, Tolerance, judge, positions
from citygrid.ledger.delivery import Sample as DeliverySample
from citygrid.market import Mechanism, Order, Side
from citygrid.participants import Battery
from citygrid.settings import CitygridSettings
from citygrid.sim.balancing_metrics import Tally
from citygrid.sim.profiles import STEP_S, T0_MS, Profile
from citygrid.stream.battery import BatteryAgent
from citygrid.stream.bidding import Position, combine, point_wh
from citygrid.stream.forecasting import SeriesState, observe
from citygrid.stream.market.auction import MarketPlan
from citygrid.stream.market.grid import MarketGrid, from_net
from citygrid.stream.market.participants import order_from_forecast, tradable_wh
from citygrid.stream.solar import Site

SUPPLIER = "supplier"
WH_PER_KW = STEP_S / 3.6  # kW held over one 15-minute interval


@dataclass(frozen=True)
class Tariff:
    """Prices (planck/Wh) and per-level fees of the simulated market. Retail above local trade above
    feed-in, so neighbours trade first; the fees are small next to the spread, as in gsy-e's setups."""

    supplier_sells: int = 2_800_000
    supplier_buys: int = 800_000
    buy_limit: int = 3_200_000  # what every participant's bids pay at most
    sell_limit: int = 500_000  # what every participant's offers accept at least
    fees: tuple[tuple[str, int], ...] = (("house", 0), ("feeder", 10_000), ("substation", 20_000),
                                         ("grid", 50_000))


@dataclass(frozen=True)
class Sample:
    """Which days the market runs on: the first `days` of every `period` days, from day `start`."""

    days: int = 4
    period: int = 28
    start: int = 14  # two weeks for the forecasters to learn before the first market day

    def steps(self, total: int) -> Iterator[int]:
        """The quarter-hour indices of the sampled days."""
        per_day = 86_400 // STEP_S
        for day in range(self.start, total // per_day):
            if (day - self.start) % self.period < self.days:
                yield from range(day * per_day, (day + 1) * per_day)


@dataclass(frozen=True)
class Scenario:
    """What the participants do: the order rule they bid by, and whether their batteries run."""

    name: str
    quantile_bids: bool
    batteries: bool


SCENARIOS = (Scenario("point bids, no batteries", False, False),
             Scenario("quantile bids, no batteries", True, False),
             Scenario("quantile bids + batteries", True, True))


@dataclass
class Home:
    """One participant: its bus, devices (profile key, scale, generation?), battery, and series in Wh."""

    name: str
    bus: str
    devices: list[tuple[tuple[str, str], float, bool]]
    battery: Battery | None
    net_wh: np.ndarray | None = None  # measured net export per interval (before any battery)
    pv_wh: np.ndarray | None = None


@dataclass
class GridCase:
    """Everything one grid's simulation needs, built once and shared by every scenario."""

    grid: str
    market: MarketGrid
    homes: list[Home]
    supplier_bus: str
    forecasts: dict[tuple[str, str], np.ndarray]  # profile key → (T, 4): point, P10, P50, P90 in kW
    steps: int

    def plan(self, tariff: Tariff) -> MarketPlan:
        """Where and at what fees every interval clears."""
        location = {h.name: h.bus for h in self.homes} | {SUPPLIER: self.supplier_bus}
        return MarketPlan(self.market, FeeSchedule(constant=dict(tariff.fees)), location)


def forecast_series(kw: np.ndarray, site: Site | None, s: CitygridSettings) -> np.ndarray:
    """(T, 4) point, P10, P50, P90 for each step, each made one step before by the workers' forecaster."""
    state = SeriesState(s.stream.energy_step_s, s.stream.energy_season_steps, model_name=s.stream.model,
                        site=site)
    out = np.zeros((len(kw), 4))
    for i in range(len(kw) - 1):
        step = observe(state, float(kw[i]), T0_MS + i * STEP_S * 1000)
        out[i + 1] = (step.forecast, *step.bands)
    return out


def storage_batteries(net: object) -> dict[str, Battery]:
    """Bus → battery from a SimBench net's storage table (its efficiency column holds a fraction)."""
    out = {}
    for _, row in net.storage.iterrows():
        eff = float(row.get("efficiency_percent", 0.95))
        out[str(int(row.bus))] = Battery(
            capacity_wh=float(row.max_e_mwh) * 1e6, power_w=abs(float(row.p_mw)) * 1e6,
            efficiency=eff / 100 if eff > 1 else eff,
            self_discharge_per_day=float(row.get("self-discharge_percent_per_day", 0.13)) / 100)
    return out


def pv_battery(pv_kw: float) -> Battery:
    """A PV owner's battery in the shape of SimBench's PV_Storage units (see the module docstring)."""
    return Battery(capacity_wh=2 * pv_kw * 1000, power_w=pv_kw * 1000)


def homes_of(net: object, profiles: list[Profile]) -> list[Home]:
    """One participant per bus with the loads and PV units on it, and its battery."""
    bus_of = {str(r["name"]): str(int(r["bus"])) for t in (net.load, net.sgen) for _, r in t.iterrows()}
    rated = {str(r["name"]): float(r["p_mw"]) * 1000 for _, r in net.sgen.iterrows()}
    base = {}
    for p in profiles:
        base.setdefault((p.kind, p.profile), p)
    by_bus: dict[str, list[Profile]] = defaultdict(list)
    for p in profiles:
        by_bus[bus_of[p.name]].append(p)
    stored = storage_batteries(net)
    homes = []
    for bus, members in sorted(by_bus.items(), key=lambda kv: int(kv[0])):
        devices = []
        for p in members:
            ref = base[(p.kind, p.profile)]
            scale = float(p.kw.max() / ref.kw.max()) if ref.kw.max() > 0 else 0.0
            devices.append(((p.kind, p.profile), scale, p.kind == "pv"))
        pv_kw = sum(rated.get(p.name, 0.0) for p in members if p.kind == "pv")
        battery = stored.get(bus) or (pv_battery(pv_kw) if not stored and pv_kw > 0 else None)
        home = Home(f"bus{bus}", bus, devices, battery)
        home.pv_wh = sum((p.kw for p in members if p.kind == "pv"), np.zeros(len(members[0].kw))) * WH_PER_KW
        home.net_wh = home.pv_wh - sum((p.kw for p in members if p.kind != "pv"),
                                       np.zeros(len(members[0].kw))) * WH_PER_KW
        homes.append(home)
    return homes


def build_case(s: CitygridSettings, grid: str) -> GridCase:
    """Load the grid, its participants and the forecasts of every distinct profile over the year."""
    import simbench

    from citygrid.sim.profiles import grid_site, load_profiles

    net = simbench.get_simbench_net(grid)
    profiles = load_profiles(s.paths.cache_dir, grid)
    site = Site(*grid_site(s.paths.cache_dir, grid))
    forecasts = {}
    for p in profiles:
        if (p.kind, p.profile) not in forecasts:
            forecasts[(p.kind, p.profile)] = forecast_series(p.kw, site if p.kind == "pv" else None, s)
    return GridCase(grid, from_net(net, grid, s.market.interval_s), homes_of(net, profiles),
                    str(int(net.ext_grid.bus.iloc[0])), forecasts, len(profiles[0].kw))


def home_position(case: GridCase, home: Home, t: int, quantiles: bool) -> Position:
    """A participant's position for interval t as its bidder forms it: each device's P10/P50/P90 (or
    its point forecast) in Wh, signed by kind, summed (`citygrid.stream.market.participants`)."""
    parts = []
    for key, scale, generation in home.devices:
        point, p10, p50, p90 = case.forecasts[key][t] * (scale * WH_PER_KW)
        kw = (p10, p50, p90) if quantiles else (point, point, point)
        parts.append(Position.of_device(*kw, generation=generation))
    return combine(parts)


def supplier_orders(start: int, tariff: Tariff) -> list[Order]:
    """The supplier's standing offer and bid for an interval (more than the grid can carry)."""
    big = 10**9
    return [Order(order_id=f"{SUPPLIER}:s{start}", participant=SUPPLIER, side=Side.OFFER, wh=big,
                  limit=tariff.supplier_sells, interval_start_ms=start),
            Order(order_id=f"{SUPPLIER}:b{start}", participant=SUPPLIER, side=Side.BID, wh=big,
                  limit=tariff.supplier_buys, interval_start_ms=start)]


def bids(case: GridCase, scenario: Scenario, agents: dict, t: int, tariff: Tariff) -> list[Order]:
    """Every participant's order for interval t under the scenario's rule (batteries plan first)."""
    start = T0_MS + t * STEP_S * 1000
    orders = supplier_orders(start, tariff)
    for home in case.homes:
        position = home_position(case, home, t, scenario.quantile_bids)
        wh = tradable_wh(position, agents.get(home.name))[0] if scenario.quantile_bids else point_wh(position)
        order = order_from_forecast(home.name, start, wh, tariff.buy_limit, tariff.sell_limit)
        if order is not None:
            orders.append(order)
    return orders


def judged_short(home: Home, sold: int, bought: int, exchange_wh: float, start: int,
                 tolerance: Tolerance) -> bool:
    """The delivery check's verdict on one traded interval, from the participant's net meter."""
    kind = "pv" if exchange_wh >= 0 else "meter"  # the net meter's direction in the check's terms
    reading = DeliverySample(f"{home.name}-meter", 0, start, kind, abs(exchange_wh) / WH_PER_KW)
    energy = DeviceEnergy(reading.device, kind, abs(exchange_wh), STEP_S * 1000, (reading,))
    return judge(home.name, sold, bought, [energy], STEP_S * 1000, tolerance).flagged


def simulate(case: GridCase, scenario: Scenario, s: CitygridSettings, tariff: Tariff = Tariff(),
             sample: Sample = Sample()) -> Tally:
    """Run one scenario over the sampled intervals; the tally of what the meters showed."""
    plan = case.plan(tariff)
    mechanism = Mechanism(s.market.mechanism)
    tolerance = Tolerance(s.delivery.tolerance_pct, s.delivery.tolerance_wh)
    agents = {h.name: BatteryAgent(h.battery, STEP_S) for h in case.homes
              if scenario.batteries and h.battery is not None}
    tally = Tally(STEP_S)
    n = len(case.homes)
    for t in sample.steps(case.steps):
        start = T0_MS + t * STEP_S * 1000
        cleared = plan.clear(bids(case, scenario, agents, t, tariff), mechanism, start)
        traded = positions(cleared.trades, start)
        exchange, sold_net, pv = np.zeros(n), np.zeros(n), np.zeros(n)
        judged = flagged = 0
        for i, home in enumerate(case.homes):
            sold, bought = traded.get(home.name, (0, 0))
            net = float(home.net_wh[t])
            agent = agents.get(home.name)
            exchange[i] = net + (agent.track(sold - bought, net) if agent is not None else 0.0)
            sold_net[i], pv[i] = sold - bought, home.pv_wh[t]
            if sold != bought:
                judged += 1
                flagged += judged_short(home, sold, bought, exchange[i], start, tolerance)
        tally.add(exchange, sold_net, pv, judged, flagged)
    return tally


def balance(s: CitygridSettings, grids: list[str], sample: Sample,
            scenarios: tuple[Scenario, ...] = SCENARIOS) -> dict[str, dict]:
    """Every grid under every scenario: grid → {"homes", "batteries", "scenarios": name → summary}."""
    out = {}
    for grid in grids:
        case = build_case(s, grid)
        out[grid] = {"participants": len(case.homes),
                     "batteries": sum(h.battery is not None for h in case.homes),
                     "battery_kwh": sum(h.battery.capacity_wh for h in case.homes if h.battery) / 1000,
                     "scenarios": {sc.name: simulate(case, sc, s, sample=sample).summary()
                                   for sc in scenarios}}
    return out


def notes(s: CitygridSettings, sample: Sample, seconds: float) -> list[str]:
    """What the report's figures are and how they were made."""
    share = min(sample.days, sample.period) / sample.period
    return [
        f"Generated by `citygrid stream balance` in {seconds:.0f} s on a 2-core machine shared with other "
        f"work. SimBench 2016 profiles at 15 min; the forecaster ({s.stream.model}) learns every "
        f"quarter-hour of the year; the market is cleared on the first {sample.days} days of every "
        f"{sample.period} from day {sample.start} (about {share:.0%} of the year, every season; batteries "
        "keep their charge across the gaps). Peaks are over the cleared intervals.",
        "Scenarios: point bids = every participant trades its point forecast (the bidder's old rule); "
        "quantile bids = it offers its P10 surplus and bids its P90 deficit, nothing when the band "
        "straddles zero (citygrid.stream.bidding); batteries = each battery plans from the same forecasts "
        "(store surplus, cut import above the home's running level, fill from the grid to 30 % below it), "
        "lets its owner trade nearer the median, then tracks the trade (citygrid.stream.battery).",
        "Market: the grid's own market tree (citygrid.stream.market.auction, pay-as-clear), fees per level "
        "(planck/Wh) house 0, feeder 10k, substation 20k, grid 50k; a supplier at the MV connection sells "
        "at 2.8M and buys at 0.8M without limit, so every order clears; participants bid up to 3.2M and "
        "offer from 0.5M.",
        "Imbalance = the participant's metered exchange - its traded export, summed in absolute value; "
        "shortfall = the part that breaks the trade (exported less than sold, imported less than bought); "
        "flagged = traded intervals the delivery check's `judge` flags on the net meter (tolerance "
        f"{s.delivery.tolerance_pct} % + {s.delivery.tolerance_wh} Wh). Self-consumption = 1 - PV exported "
        "/ PV generated over PV owners. Batteries: SimBench's storage table where the grid has one, else "
        "SimBench's PV_Storage shape per PV owner (power = PV rating, 2 h, 95 % each way, 0.13 %/day).",
    ]
