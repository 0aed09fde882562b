"""`citygrid ledger …`: anchoring, proofs and their verification."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citygrid.errors import CitygridError
from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings

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
          out: Path = typer.Option(..., "-o", "--out", help="Where to write the proof JSON.")) -> None:
    """Export the inclusion proof of one reading as a self-contained JSON bundle."""
    from citygrid.ledger.anchor_store import AnchorStore
    from citygrid.ledger.proofs import build_bundle
    from citygrid.signing import DeviceRegistry

    s = get_settings()
    try:
        key = DeviceRegistry.load(s.device_registry).public_key(device)
        bundle = build_bundle(AnchorStore(s.data_dir / "anchors.sqlite"), device, seq, key)
    except (CitygridError, KeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    out.write_text(bundle.model_dump_json(indent=1))
    console.print(f"proof of {device}/{seq} written to {out}")


@app.command()
def verify(bundle_file: Path,
           anchorer: str = typer.Option(None, help="Public key (0x…) of the anchoring account; "
                                        "defaults to the configured signer's.")) -> None:
    """Check a reading's proof bundle: device signature, Merkle path, and the root on chain."""
    from substrateinterface import Keypair

    from citygrid.ledger.chain import ChainClient
    from citygrid.ledger.proofs import ProofBundle, verify_on_chain

    s = get_settings()
    bundle = ProofBundle.model_validate_json(bundle_file.read_text())
    expected = anchorer or "0x" + Keypair.create_from_uri(s.chain.signer_uri).public_key.hex()
    try:
        reading = verify_on_chain(bundle, ChainClient(s.chain.url), expected)
    except CitygridError as exc:
        console.print(f"[red]INVALID:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]VALID[/] reading {reading.device}/{reading.seq} anchored in block "
        f"#{bundle.block_number} {bundle.block_hash} (root {bundle.root[:16]}…)"
    )


@app.command()
def status() -> None:
    """Anchored batches so far."""
    from citygrid.ledger.anchor_store import AnchorStore

    store = AnchorStore(get_settings().data_dir / "anchors.sqlite")
    table = Table("batch", "interval start (ms)", "readings", "root", "block")
    for b in store.batches():
        table.add_row(str(b.id), str(b.interval_start_ms), str(b.count), b.root.hex()[:16] + "…",
                      f"#{b.block_number} {b.block_hash[:18]}…" if b.anchored else "[yellow]pending")
    console.print(table)
