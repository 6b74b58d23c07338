"""Self-signed test certificates (with the `cryptography` package, an aiortc dependency)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["rsa", "ec"]


def write_self_signed(
    dir: Path,
    name: str = "server",
    cn: str = "localhost",
    *,
    key_type: KeyType = "rsa",
    rsa_bits: int = 2048,
    passphrase: bytes | None = None,
) -> tuple[Path, Path]:
    """Write DIR/NAME.crt and DIR/NAME.key (PEM, PKCS#8 key, unencrypted unless `passphrase`)
    for a certificate valid for a day, CN=cn, SAN localhost and 127.0.0.1; returns (cert, key).
    Overwrites existing files in place."""
    if key_type == "rsa":
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=rsa_bits
        )
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    cert_path = Path(dir) / f"{name}.crt"
    key_path = Path(dir) / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def fingerprint(cert_path: Path) -> str:
    """SHA-256 hex of the DER of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
