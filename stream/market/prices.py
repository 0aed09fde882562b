"""Re-checking an interval's price certificate from the orders and the grid alone (no solver).

The conditions are the welfare LP's complementary slackness, so a certificate that passes proves both
that the prices are competitive-equilibrium prices and that the accepted quantities maximise welfare:
- every market balances: its own accepted offers - bids + what its children send = what it sends up;
- no wire carries more than its capacity;
- energy flows only towards the dearer market: sending up needs parent ≥ child + the parent's fee
  (equal unless the wire is full), sending down needs child ≥ parent + the child's fee (likewise), and
  an idle wire with capacity keeps parent - parent's fee ≤ child ≤ parent + child's fee;
- an order priced in the money (bid above its market's price, offer plus its market's fee below it)
  traded all its Wh left after netting; one priced out traded nothing.
Constant fees only: with percentage fees the clearing is the LP itself (see `reference.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from citygrid.clearing import PriceCertificate
from citygrid.market import Order, Side
from citygrid.stream.market.book_arrays import place
from citygrid.stream.market.grid import ROOT, MarketGrid


def check_certificate(cert: PriceCertificate, orders: Iterable[Order], grid: MarketGrid,
                      location: Mapping[str, str] | None) -> list[str]:
    """Every condition the certificate breaks (empty: it is a competitive equilibrium)."""
    if cert.fees.has_percentage:
        return ["percentage-fee clearings are checked against the reference LP, not node prices"]
    book = place(orders, grid, location)
    if dict(sorted(book.netted.items())) != cert.netted:
        return ["the netting of participants' own orders differs"]
    if not cert.prices:
        return ["no prices for a book with orders"] if (book.qty > 0).any() or cert.accepted else []
    problems = _order_checks(cert, book, grid)
    problems += _balance_checks(cert, book, grid)
    problems += _wire_checks(cert, grid)
    return problems


def _order_checks(cert: PriceCertificate, book: object, grid: MarketGrid) -> list[str]:
    out = []
    for k, o in enumerate(book.orders):
        node = book.nodes[book.node[k]]
        if node not in cert.prices:
            return [f"no price for market {node}"]
        price, got, left = cert.prices[node], cert.accepted.get(o.order_id, 0), int(book.qty[k])
        eff = o.limit if o.side is Side.BID else o.limit + cert.fees.c(grid.node(node).level)
        surplus = eff - price if o.side is Side.BID else price - eff
        if not 0 <= got <= left:
            out.append(f"{o.order_id} traded {got} Wh of the {left} it had")
        elif surplus > 0 and got != left:
            out.append(f"{o.order_id} is in the money at {price} but traded {got} of {left} Wh")
        elif surplus < 0 and got:
            out.append(f"{o.order_id} is priced out at {price} but traded {got} Wh")
    return out


def _balance_checks(cert: PriceCertificate, book: object, grid: MarketGrid) -> list[str]:
    net: dict[str, int] = defaultdict(int)
    for k, o in enumerate(book.orders):
        got = cert.accepted.get(o.order_id, 0)
        net[book.nodes[book.node[k]]] += -got if o.side is Side.BID else got
    out = []
    for n in grid.bottom_up:
        inflow = net[n] + sum(cert.flows.get(c, 0) for c in grid.children[n])
        sent = 0 if n == ROOT else cert.flows.get(n, 0)
        if inflow != sent:
            out.append(f"market {n} does not balance: {inflow} Wh in, {sent} Wh sent up")
    return out


def _wire_checks(cert: PriceCertificate, grid: MarketGrid) -> list[str]:
    out = []
    for n in grid.bottom_up:
        node = grid.node(n)
        if node.parent is None:
            continue
        f, cap = cert.flows.get(n, 0), node.capacity_wh
        gap = cert.prices[node.parent] - cert.prices[n]
        up, down = cert.fees.c(grid.node(node.parent).level), cert.fees.c(node.level)
        full = cap is not None and abs(f) == cap
        if cap is not None and abs(f) > cap:
            out.append(f"wire above {n} carries {f} Wh over its {cap}")
        elif cap == 0:
            continue
        elif f > 0 and (gap < up or (gap != up and not full)):
            out.append(f"{n} sends {f} Wh up but the price gap {gap} is not its fee {up}")
        elif f < 0 and (-gap < down or (-gap != down and not full)):
            out.append(f"{n} takes {-f} Wh but the price gap {-gap} is not its fee {down}")
        elif f == 0 and not -down <= gap <= up:
            out.append(f"{n} trades nothing with its parent though the price gap {gap} pays to")
    return out
