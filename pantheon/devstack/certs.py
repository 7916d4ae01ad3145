"""A dev certificate authority and one server certificate for 127.0.0.1/localhost.

Created once per state dir with the `openssl` CLI (no Python crypto
dependency). Kafka, MinIO and the Pantheon services all present the same
server certificate; clients trust the dev CA (`PANTHEON_CA_FILE`). Keys are
mode 0600. RSA is used because every consumer here (Java's PEM keystore,
librdkafka, Go's crypto/tls, Python's ssl) reads it without surprises.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity some TLS clients accept for leaf certs

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class CertFiles:
    """The PEM files of the dev PKI."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, certs_dir: Path) -> CertFiles:
        return cls(
            ca_cert=certs_dir / "ca.crt",
            ca_key=certs_dir / "ca.key",
            server_cert=certs_dir / "server.crt",
            server_key=certs_dir / "server.key",
        )

    def all_exist(self) -> bool:
        return all(p.is_file() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)


def ensure_certs(certs_dir: Path) -> CertFiles:
    """Create the CA and server certificate unless they already exist."""
    files = CertFiles.in_dir(certs_dir)
    if files.all_exist():
        return files
    log.info("creating dev CA and server certificate in %s", certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(certs_dir, 0o700)
    # Build everything in a temp dir and move it in at the end, so an
    # interrupted run never leaves a CA without its matching server cert.
    with tempfile.TemporaryDirectory(dir=certs_dir) as tmp_name:
        tmp = Path(tmp_name)
        old_umask = os.umask(0o077)  # keys are born private
        try:
            _openssl(
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                str(tmp / "ca.key"),
            )
            _openssl(
                "req",
                "-x509",
                "-new",
                "-key",
                str(tmp / "ca.key"),
                "-sha256",
                "-days",
                str(CA_DAYS),
                "-subj",
                "/O=Pantheon dev/CN=Pantheon dev CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                str(tmp / "ca.crt"),
            )
            _openssl(
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                str(tmp / "server.key"),
            )
            _openssl(
                "req",
                "-new",
                "-key",
                str(tmp / "server.key"),
                "-subj",
                "/O=Pantheon dev/CN=localhost",
                "-out",
                str(tmp / "server.csr"),
            )
            (tmp / "server.ext").write_text(_SERVER_EXTENSIONS)
            _openssl(
                "x509",
                "-req",
                "-in",
                str(tmp / "server.csr"),
                "-sha256",
                "-CA",
                str(tmp / "ca.crt"),
                "-CAkey",
                str(tmp / "ca.key"),
                "-set_serial",
                str(secrets.randbits(63)),
                "-days",
                str(SERVER_DAYS),
                "-extfile",
                str(tmp / "server.ext"),
                "-out",
                str(tmp / "server.crt"),
            )
        finally:
            os.umask(old_umask)
        for src, dst, mode in (
            (tmp / "ca.key", files.ca_key, 0o600),
            (tmp / "server.key", files.server_key, 0o600),
            (tmp / "ca.crt", files.ca_cert, 0o644),
            (tmp / "server.crt", files.server_cert, 0o644),
        ):
            os.chmod(src, mode)
            os.replace(src, dst)
    return files


#: Subject of the Kafka node's own certificate, for the CONTROLLER listener
#: (mutual TLS); Kafka names the principal by its RFC 2253 form.
NODE_SUBJECT = "/O=Pantheon dev/CN=pantheon-kafka-node"
NODE_PRINCIPAL = "User:CN=pantheon-kafka-node,O=Pantheon dev"

#: A workload identity's certificate: a client certificate whose only name is
#: its SPIFFE ID (the services read the identity from that URI SAN).
_IDENTITY_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = URI:{spiffe_id}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""
IDENTITY_DAYS = 365


def issue_leaf(
    ca_cert: Path, ca_key: Path, key: Path, cert: Path, subject: str, extensions: str, days: int = SERVER_DAYS
) -> tuple[Path, Path]:
    """A fresh key and a certificate for it signed by the CA; files appear atomically."""
    key.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=key.parent) as tmp_name:
        tmp = Path(tmp_name)
        old_umask = os.umask(0o077)
        try:
            _openssl(
                "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tmp / "k.key")
            )
            _openssl("req", "-new", "-key", str(tmp / "k.key"), "-subj", subject, "-out", str(tmp / "k.csr"))
            (tmp / "k.ext").write_text(extensions)
            _openssl(
                "x509", "-req", "-in", str(tmp / "k.csr"), "-sha256",
                "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-set_serial", str(secrets.randbits(63)), "-days", str(days),
                "-extfile", str(tmp / "k.ext"), "-out", str(tmp / "k.crt"),
            )  # fmt: skip
        finally:
            os.umask(old_umask)
        os.chmod(tmp / "k.key", 0o600)
        os.chmod(tmp / "k.crt", 0o644)
        os.replace(tmp / "k.key", key)
        os.replace(tmp / "k.crt", cert)
    return key, cert


def ensure_node_cert(certs_dir: Path) -> tuple[Path, Path]:
    """The Kafka node's key and certificate, signed by the dev CA (made once).

    Only the broker and controller of the node hold it: they authenticate to
    each other with it, so the controller listener needs no anonymous user.
    """
    files = CertFiles.in_dir(certs_dir)
    key, cert = certs_dir / "kafka-node.key", certs_dir / "kafka-node.crt"
    if key.is_file() and cert.is_file():
        return key, cert
    return issue_leaf(files.ca_cert, files.ca_key, key, cert, NODE_SUBJECT, _SERVER_EXTENSIONS)


def issue_identity(
    ca_cert: Path, ca_key: Path, out_dir: Path, name: str, spiffe_id: str, days: int = IDENTITY_DAYS
) -> tuple[Path, Path]:
    """`<out_dir>/<name>.key` and `.crt`: the workload identity `spiffe_id`."""
    return issue_leaf(
        ca_cert,
        ca_key,
        out_dir / f"{name}.key",
        out_dir / f"{name}.crt",
        f"/O=Pantheon/CN={name}",
        _IDENTITY_EXTENSIONS.format(spiffe_id=spiffe_id),
        days,
    )
