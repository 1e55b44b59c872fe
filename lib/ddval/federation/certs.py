"""TLS certificates and SuperNode keys for a federation on one machine (tests, demos).

A real consortium uses certificates from its own CA and lets each hospital make its own key pair;
this module makes the same files locally with ``cryptography``: a self-signed CA, a SuperLink
certificate for ``127.0.0.1``/``localhost`` signed by it, and one EC (P-384) key pair per site in
OpenSSH format (the private key stays with the SuperNode, the public key is registered with the
SuperLink by ``flwr supernode register``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerCertificates:
    """The CA certificate (what every site and the ``flwr`` CLI trust) and the SuperLink's pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ddval federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return path


def make_server_certificates(folder: str | os.PathLike, days: int = 30) -> ServerCertificates:
    """A self-signed CA and a SuperLink certificate for 127.0.0.1 and localhost, in ``folder``.

    Args:
        folder: where ``ca.pem``, ``server.pem`` and ``server.key`` are written.
        days: validity of both certificates.

    Returns:
        The three paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ddval local CA"))
        .issuer_name(_name("ddval local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "server.key", server_key, serialization.PrivateFormat.PKCS8)
    return ServerCertificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")


def make_node_keys(folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """A site's EC P-384 key pair in OpenSSH format: ``<name>`` (private) and ``<name>.pub``.

    Returns:
        ``(private key path, public key path)``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = _write_key(folder / name, key, serialization.PrivateFormat.OpenSSH)
    public = folder / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public
