"""The local CA is made once even when the local servers start in parallel and each asks for it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509

from citygrid.devtools.pki import LocalPki


def test_parallel_starts_share_one_ca_and_the_server_certificate_chains_to_it(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: LocalPki(tmp_path / "pki").ensure(), range(8)))
    pki = LocalPki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert not list((tmp_path / "pki").glob("*.tmp"))
    assert pki.ca_key.stat().st_mode & 0o077 == 0
