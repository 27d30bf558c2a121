"""A local certificate authority for mutual TLS with the P1 simulator (tests and `make run`).

P1 knows its clients by their certificates; locally we play both sides: a throwaway CA signs
the simulator's server certificate (for 127.0.0.1 and localhost) and our client certificate.
Everything is generated at start (EC P-256, valid a few days) into a folder that is never
committed (`.local/`, or a test's temporary directory): no private key lives in the repository.

    pki = ensure_pki(Path(".local/pki"))
    pki.server_context()          # ssl.SSLContext for the simulator, requiring a client cert
    pki.client_env()              # P1_CLIENT_CERT / P1_CLIENT_KEY / P1_CA_CERT for our client
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=7)
RENEW_BEFORE = timedelta(days=1)
CLIENT_NAME = "e-rejestracja-p1-client"
_FILES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    def server_context(self, require_client_cert: bool = True) -> ssl.SSLContext:
        """The simulator's side: its certificate, and (mutual TLS) clients signed by our CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.ca)
        return context

    def client_context(self, with_cert: bool = True) -> ssl.SSLContext:
        """A urllib client's side (the stack's own calls to the simulator)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def client_env(self) -> dict[str, str]:
        """What P1Client.from_env reads (paths here; PEM contents in production)."""
        return {
            "P1_CLIENT_CERT": str(self.client_cert),
            "P1_CLIENT_KEY": str(self.client_key),
            "P1_CA_CERT": str(self.ca),
        }


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "e-Rejestracja local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "wb") as out:
        out.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    server: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def generate_pki(folder: Path, now: datetime | None = None) -> Pki:
    """A fresh CA, server and client certificate in `folder` (created; keys mode 0600)."""
    # Certificates are checked against the real time by every TLS library: the stack's clock
    # (common/clock.py) may be shifted, this must not be.
    now = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("e-Rejestracja local CA"))
        .issuer_name(_name("e-Rejestracja local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key, client_key = _key(), _key()
    _write_cert(folder / "ca.pem", ca_cert)
    _write_key(folder / "server.key", server_key)
    _write_cert(folder / "server.pem", _issue("127.0.0.1", server_key, ca_cert, ca_key, now, True))
    _write_key(folder / "client.key", client_key)
    _write_cert(folder / "client.pem", _issue(CLIENT_NAME, client_key, ca_cert, ca_key, now, False))
    return Pki(folder)


def _still_good(folder: Path, now: datetime) -> bool:
    if not all((folder / name).is_file() for name in _FILES):
        return False
    try:
        for name in ("ca.pem", "server.pem", "client.pem"):
            cert = x509.load_pem_x509_certificate((folder / name).read_bytes())
            if cert.not_valid_after_utc - RENEW_BEFORE < now:
                return False
    except ValueError:
        return False
    return True


def ensure_pki(folder: Path) -> Pki:
    """The PKI in `folder`, generated (or renewed) when missing or about to expire. Safe when
    two stacks start at once: a new set is written aside and moved in whole."""
    now = datetime.now(UTC)
    if _still_good(folder, now):
        return Pki(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    generate_pki(fresh, now)
    stale = folder.with_name(f".{folder.name}-old-{os.getpid()}")
    if folder.exists():
        folder.rename(stale)
    try:
        fresh.rename(folder)
    except OSError:
        # Another process moved its own fresh set in meanwhile: use that one.
        shutil.rmtree(fresh, ignore_errors=True)
    shutil.rmtree(stale, ignore_errors=True)
    return Pki(folder)
