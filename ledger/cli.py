"""`citygrid ledger …`: anchoring, proofs and their verification."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from citygrid.errors import CitygridError
from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import CitygridSettings, get_settings

if TYPE_CHECKING:
    from citygrid.ledger.settlement import Settler

app = typer.Typer(help="Ledger: anchoring, proofs, settlement.", no_args_is_help=True)
console = Console()


def _fail(exc: CitygridError) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


@app.command()
def anchor() -> None:
    """Anchor each interval's readings on chain until stopped."""
    from citygrid.ledger.anchorer import Anchorer

    s = get_settings()
    serve_metrics(s.metrics_port)
    try:
        Anchorer.from_settings(s).run(stop_event_on_signals())
    except CitygridError as exc:
        raise _fail(exc) from exc


@app.command()
def proof(device: str, seq: int,
          out: Path = typer.Option(..., "-o", "--out", help="Where to write the proof JSON."),
          offline: bool = typer.Option(True, help="Save the block's header and extrinsics too, so the "
                                       "bundle verifies with no network (needs the chain now).")) -> None:
    """Export the inclusion proof of one reading as a self-contained JSON bundle."""
    from citygrid.ledger.anchor_store import AnchorStore
    from citygrid.ledger.chain import ChainClient
    from citygrid.ledger.proofs import build_bundle
    from citygrid.signing import DeviceRegistry

    s = get_settings()
    try:
        key = DeviceRegistry.load(s.paths.device_registry).public_key(device)
        chain = ChainClient(s.chain.url) if offline else None
        bundle = build_bundle(AnchorStore(s.paths.anchor_store), device, seq, key, chain)
    except (CitygridError, KeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    out.write_text(bundle.model_dump_json(indent=1))
    console.print(f"proof of {device}/{seq} written to {out}")


@app.command()
def verify(bundle_file: Path,
           anchorer: str = typer.Option(None, help="Public key (0x…) of the anchoring account; "
                                        "defaults to the configured signer's."),
           offline: bool = typer.Option(False, help="Check against the block saved in the bundle, "
                                        "with no network."),
           genesis: str = typer.Option(None, help="With --offline: the genesis hash (0x…) of the chain "
                                       "the anchor must have been signed for.")) -> None:
    """Check a reading's proof bundle: device signature, Merkle path, and the root on chain."""
    from pydantic import ValidationError

    from citygrid.ledger.proofs import ProofBundle, verify_offline, verify_on_chain

    s = get_settings()
    try:
        bundle = ProofBundle.model_validate_json(bundle_file.read_text())
    except (OSError, ValidationError) as exc:
        console.print(f"[red]INVALID:[/] {bundle_file} is not a readable proof bundle: {exc}")
        raise typer.Exit(1) from exc
    try:
        expected = anchorer or _anchorer_key(s)
        if offline:
            reading, scheme = verify_offline(bundle, expected, genesis)
            console.print(f"offline: header hash, extrinsics ({scheme}) and the anchorer's sr25519 "
                          "signature checked; finality is not")
        else:
            from citygrid.ledger.chain import ChainClient

            reading = verify_on_chain(bundle, ChainClient(s.chain.url), expected)
    except CitygridError as exc:
        console.print(f"[red]INVALID:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]VALID[/] reading {reading.device}/{reading.seq} anchored in block "
        f"#{bundle.block_number} {bundle.block_hash} (root {bundle.root[:16]}…)"
    )


@app.command()
def delivery(interval: int = typer.Argument(..., help="The interval's start, ms since the epoch (as trades "
                                            "name it)."),
             trades_file: Path = typer.Option(None, "--trades", help="JSON list of the interval's trades; "
                                              "default: the settlement store's record of it."),
             out: Path = typer.Option(None, "-o", "--out", help="Report JSON with every claim and its "
                                      "proofs; default delivery-INTERVAL.json."),
             offline: bool = typer.Option(True, help="Save each proof's block, so the claims verify with "
                                          "no network (needs the chain now)."),
             publish: bool = typer.Option(False, help="Also publish each alert to the alerts topic.")
             ) -> None:
    """Check each trader's energy against its anchored readings; exit 2 when one is flagged."""
    from rich import box

    from citygrid.ledger.delivery_check import publish_alerts, run_delivery_check

    s = get_settings()
    try:
        report = run_delivery_check(s, interval, trades_file, with_blocks=offline)
    except CitygridError as exc:
        raise _fail(exc) from exc
    table = Table("participant", "traded", "measured", "short", "verdict", box=box.SIMPLE_HEAD,
                  title=f"interval {interval}, energy in Wh; flagged beyond {s.delivery.tolerance_pct:g} % "
                        f"+ {s.delivery.tolerance_wh:g} Wh")
    for p in report.participants:
        colour = "red" if p.verdict in ("delivery_shortfall", "missing_readings") else "green"
        gap = sum(p.uncovered_ms.values()) / 1000
        table.add_row(p.participant, f"{'bought' if p.side == 'buyer' else 'sold'} {p.traded_wh}",
                      f"{p.measured_wh:.1f}", f"{round(p.shortfall_wh, 1) + 0.0:.1f}",
                      f"[{colour}]{p.verdict}" + (f" (gap {gap:g} s)" if gap else ""))
    console.print(table)
    path = out or Path(f"delivery-{interval}.json")
    path.write_text(report.model_dump_json(indent=1))
    console.print(f"{len(report.claims)} flagged, {sum(len(c.proofs) for c in report.claims)} proofs: {path}")
    try:
        if publish and report.claims:
            console.print(f"{publish_alerts(s.kafka, report.claims)} alerts published")
    except CitygridError as exc:
        raise _fail(exc) from exc
    if report.flagged:
        raise typer.Exit(2)


@app.command()
def status(check_chain: bool = typer.Option(False, help="Read each anchored root back from the "
                                            "chain's System.Remarked events.")) -> None:
    """Anchored batches so far."""
    from citygrid.ledger.anchor_store import AnchorStore

    s = get_settings()
    store = AnchorStore(s.paths.anchor_store)
    table = Table("batch", "interval start (ms)", "readings", "root", "block", "on chain")
    try:
        chain, anchorer = None, _anchorer_key(s)
        if check_chain:
            from citygrid.ledger.chain import ChainClient

            chain = ChainClient(s.chain.url)
        for b in store.batches():
            verdict = "-"
            if chain is not None and b.anchored:
                from citygrid.ledger.anchor_history import anchor_problem

                problem = anchor_problem(chain, b, anchorer)
                verdict = f"[red]{problem}" if problem else "[green]ok"
            table.add_row(str(b.id), str(b.interval_start_ms), str(b.count), b.root.hex()[:16] + "…",
                          f"#{b.block_number} {b.block_hash[:18]}…" if b.anchored else "[yellow]pending",
                          verdict)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(table)


def _settler(s: CitygridSettings) -> Settler:
    # Imports stay lazy so `citygrid --help` is fast.
    from citygrid.ledger.settlement import Settler

    return Settler.from_settings(s)


def _anchorer_key(s: CitygridSettings) -> str:
    """The configured anchoring account's public key, 0x…: whose remarks count as anchors."""
    from citygrid.ledger.keystore import keypair_from_uri
    from citygrid.ledger.signer import signer_uri

    return "0x" + keypair_from_uri(signer_uri(s, "anchorer"), "the anchorer's signer").public_key.hex()


@app.command()
def settle(book_file: Path = typer.Option(None, "--book", help="JSON list of published intervals "
                                          "({summary, orders, trades}, as `market audit --save` writes); "
                                          "default: consume what the market publishes.")) -> None:
    """Settle cleared trades backed by signed orders on chain, one atomic extrinsic per interval, once."""
    from pydantic import TypeAdapter

    from citygrid.interval_records import PublishedInterval

    s = get_settings()
    try:
        settler = _settler(s)
        if book_file is None:  # recovers once this instance is the active one (it may be a standby)
            from citygrid.ledger.settlement_feed import run_feed

            run_feed(settler, s, stop_event_on_signals())
            return
        for r in settler.recover():
            console.print(f"recovered interval {r.interval_start_ms}: {r.status}")
        from citygrid.ledger.settlement_feed import settle_published

        for published in TypeAdapter(list[PublishedInterval]).validate_json(book_file.read_text()):
            r, refused = settle_published(settler, published)
            for line in refused:
                console.print(f"[yellow]refused[/] {line}")
            console.print(f"interval {r.interval_start_ms}: {r.status} ({len(r.trades)} trades) in block "
                          f"#{r.block_number} {r.block_hash}")
    except CitygridError as exc:
        raise _fail(exc) from exc


@app.command()
def authorize(amount: int = typer.Argument(..., help="Most the settler may spend for you, in the payment "
                                           "asset's smallest unit (at most the operator's cap)."),
              key_file: Path = typer.Option(..., "--key-file", help="YOUR secret URI (mnemonic), in a file "
                                            "only you can read; it is never sent anywhere."),
              settler: str = typer.Option(..., "--settler", help="The settler's SS58 address, as the "
                                          "operator publishes it.")) -> None:
    """Run by a participant with its own key: approve the settler a bounded allowance of the payment asset."""
    import stat

    from citygrid.ledger.chain import ChainClient
    from citygrid.ledger.errors import KeystoreError
    from citygrid.ledger.keystore import keypair_from_uri
    from citygrid.ledger.settlement import authorize as approve

    s = get_settings()
    try:
        if key_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystoreError(f"{key_file} is readable by others; run `chmod 600 {key_file}`")
        own = keypair_from_uri(key_file.read_text().strip(), f"the key in {key_file}")
        chain = ChainClient(s.chain.url)
        inc = approve(chain, own, settler, s.settlement.asset_id, amount, s.settlement.allowance_cap)
    except OSError as exc:
        console.print(f"[red]error:[/] cannot read {key_file}: {exc.strerror}")
        raise typer.Exit(1) from exc
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"{chain.address(own)} allowed the settler {settler} up to {amount} of asset "
                  f"{s.settlement.asset_id}, in block #{inc.block_number}")


@app.command()
def history(check_chain: bool = typer.Option(True, help="Read each settlement back from the chain.")) -> None:
    """Settled intervals, each checked against its remark and transfer events on chain."""
    from citygrid.ledger.settlement_history import read_back

    s = get_settings()
    try:
        settler = _settler(s)
        table = Table("interval start (ms)", "trades", "status", "block", "on chain")
        for r in settler.store.all():
            verdict = "-"
            if check_chain and r.status == "settled":
                back = read_back(settler.chain, r)
                verdict = "[green]ok" if back.matches(r) else f"[red]{back.problem(r)}"
            table.add_row(str(r.interval_start_ms), str(len(r.trades)), r.status,
                          f"#{r.block_number}" if r.block_number is not None else "", verdict)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(table)
