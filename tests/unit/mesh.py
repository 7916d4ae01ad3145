"""A throwaway mesh for in-process tests: a CA, the server certificate, the
built-in workload identities and their policy file, as the dev stack makes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pantheon.config import ClientIdentity, KafkaSettings, S3Settings, ServiceSettings, TLSSettings
from pantheon.devstack import mesh
from pantheon.devstack.certs import CertFiles, ensure_certs, issue_identity
from pantheon.devstack.paths import StackPaths


@dataclass(frozen=True)
class Mesh:
    paths: StackPaths
    certs: CertFiles

    @property
    def tls(self) -> TLSSettings:
        return TLSSettings(
            ca_file=str(self.certs.ca_cert),
            cert_file=str(self.certs.server_cert),
            key_file=str(self.certs.server_key),
        )

    @property
    def policy_file(self) -> str:
        return str(self.paths.policy_file)

    def service_settings(self, **extra: Any) -> ServiceSettings:
        """Settings of an in-process server on port 0 with this mesh and
        unused backends (tests hand in fakes)."""
        tls = self.tls
        return ServiceSettings(
            listen="127.0.0.1:0",
            tls=tls,
            kafka=KafkaSettings(bootstrap="unused:1", username="u", password="p", ca_file=tls.ca_file),
            s3=S3Settings(endpoint="https://unused", access_key="a", secret_key="s", ca_file=tls.ca_file),
            policy_file=self.policy_file,
            **extra,
        )

    def identity(self, name: str) -> ClientIdentity:
        cert, key = mesh.identity_files(self.paths, name)
        if not cert.is_file():  # an identity the policy does not know
            issue_identity(
                self.certs.ca_cert,
                self.certs.ca_key,
                self.paths.identities,
                name,
                f"spiffe://pantheon.local/{name}",
            )
        return ClientIdentity(cert_file=str(cert), key_file=str(key))


def make_mesh(root: Path) -> Mesh:
    paths = StackPaths(state=root, cache=root)
    certs = ensure_certs(paths.certs)
    mesh.ensure_identities(paths, certs)
    return Mesh(paths, certs)
