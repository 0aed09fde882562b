"""Turning accepted quantities into buyer-seller pairs, each matched in the lowest market it can be.

Bottom-up, each market first matches its own accepted offers and bids, then what its children could
not match among themselves; only one side is ever left over (what the market sends its parent, or
takes from it), and it moves up. So energy crosses a wire only as the market's net flow, a trade
inside one feeder never pays the substation's fee, and the pairs' path fees add up to what the
clearing charged. Within a market, offers go cheapest first and bids highest first, ties by order id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citygrid.stream.market.book_arrays import Book
from citygrid.stream.market.grid import MarketGrid


@dataclass(frozen=True)
class Pair:
    """`wh` of bid `bid` (book index) bought from offer `offer`, matched in market `market`."""

    bid: int
    offer: int
    wh: int
    market: str


def pair_up(book: Book, grid: MarketGrid, accepted: np.ndarray,
            assignments: list[tuple[int, int, int]] | None = None) -> list[Pair]:
    """Pairs for the accepted Wh: orders start in their own market and leftovers rise; or, from the LP
    path, `assignments` (order, market index, Wh) say which market matches each order's energy."""
    mine: list[list[list[int]]] = [[] for _ in book.nodes]
    if assignments is None:
        for k in np.flatnonzero(accepted):
            mine[int(book.node[k])].append([int(k), int(accepted[k])])
    else:
        for k, market, wh in assignments:
            mine[market].append([k, wh])
    carry: dict[str, tuple[list, list]] = {}
    pairs: list[Pair] = []
    limit = book.limit
    for i, n in enumerate(book.nodes):
        offers = [e for e in mine[i] if not book.is_bid[e[0]]]
        bids = [e for e in mine[i] if book.is_bid[e[0]]]
        for c in grid.children[n]:
            o, b = carry.pop(c)
            offers += o
            bids += b
        offers.sort(key=lambda e: (limit[e[0]], e[0]))
        bids.sort(key=lambda e: (-limit[e[0]], e[0]))
        carry[n] = _match(offers, bids, n, pairs)
    return pairs


def _match(offers: list, bids: list, market: str, pairs: list[Pair]) -> tuple[list, list]:
    oi = bi = 0
    while oi < len(offers) and bi < len(bids):
        o, b = offers[oi], bids[bi]
        wh = min(o[1], b[1])
        pairs.append(Pair(b[0], o[0], wh, market))
        o[1] -= wh
        b[1] -= wh
        oi += not o[1]
        bi += not b[1]
    return offers[oi:], bids[bi:]
