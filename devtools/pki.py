"""The local platform's own certificate authority and the broker's server certificate.

Made once under `<data_dir>/pki` (keys 0600) with the `cryptography` package, so every MQTT
connection of the local platform, the demo and the tests is TLS with a hostname-checked server
certificate, exactly as in a deployment that uses a real CA.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citygrid.storage import atomic_write

CA_DAYS = 3650
LEAF_DAYS = 825  # the CA/Browser Forum's old ceiling: long enough for a dev box, short enough to rotate
LOCAL_NAMES = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")
_LOCK = threading.Lock()  # flock is per process: threads of one process queue here first


def _file(name: str, doc: str) -> property:
    """A file of the PKI directory, as a read-only attribute."""
    return property(lambda self: self.dir / name, doc=doc)


@dataclass(frozen=True)
class LocalPki:
    """Where the CA and the broker's certificate and key live."""

    dir: Path
    ca_cert = _file("ca.crt", "The CA certificate every client trusts.")
    ca_key = _file("ca.key", "The CA's private key (0600): only this module reads it.")
    server_cert = _file("server.crt", "The broker's certificate for 127.0.0.1 and localhost.")
    server_key = _file("server.key", "The broker's private key (0600).")

    def ensure(self) -> LocalPki:
        """Create the CA and the server certificate unless both exist (idempotent)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        # The local servers start in parallel and each ensures the PKI: one creates it, the others wait.
        with _LOCK, open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._create_missing()

    def _create_missing(self) -> LocalPki:
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            _write_key(self.ca_key, key)
            atomic_write(self.ca_cert, _ca_cert(key).public_bytes(serialization.Encoding.PEM))
            self.server_cert.unlink(missing_ok=True)
        if not (self.server_cert.exists() and self.server_key.exists()):
            self.issue(self.server_cert, self.server_key, "citygrid-mqtt", server=True)
        return self

    def issue(self, cert_path: Path, key_path: Path, common_name: str, server: bool = False,
              client: bool = False) -> None:
        """A leaf certificate signed by the CA: a server one for the local names, or a client one
        whose subject is `common_name` (for brokers that take the identity from the certificate), or
        both (a Kafka broker is its own controller's client)."""
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [*([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
                 *([ExtendedKeyUsageOID.CLIENT_AUTH] if client or not server else [])]),
                critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in LOCAL_NAMES]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOCAL_IPS]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(key_path, key)
        atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _ca_cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citygrid local CA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    atomic_write(path, pem, mode=0o600)
