"""The dev stack's environment variables: its endpoints and dev credentials.

`environment()` is what `scripts/stack env` prints (and what tests read to
find the stack); `server_env` is the part of it, and of this process's own
environment, that a server process the stack starts is given.
"""

from __future__ import annotations

import os
import shlex

from pantheon.devstack import kafka, mesh
from pantheon.devstack.certs import CertFiles
from pantheon.devstack.credentials import (
    KAFKA_INGEST_USER,
    KAFKA_READER_USER,
    KAFKA_SIMULATION_USER,
    MINIO_STORAGE_USER,
    load,
)
from pantheon.devstack.errors import StackError
from pantheon.devstack.settings import Settings
from pantheon.events.topics import (
    DATA_STORED,
    DEAD_LETTER,
    RECORDS,
    RESTRICTED_DATA_STORED,
    RESTRICTED_DEAD_LETTER,
    RESTRICTED_RECORDS,
)


def environment(settings: Settings | None = None) -> dict[str, str]:
    """Endpoints and dev credentials of the stack, as environment variables.

    Raises StackError before the first `up` (no credentials exist yet).
    """
    s = settings or Settings.from_env()
    p = s.paths
    creds = load(p.credentials)
    if creds is None:
        raise StackError(f"no stack in {p.state} yet; run `scripts/stack up` first")
    certs = CertFiles.in_dir(p.certs)
    return {
        # Downstream consumers (any language): the read-only Kafka user.
        "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": kafka.SCRAM_MECHANISM,
        "KAFKA_SASL_USERNAME": KAFKA_READER_USER,
        "KAFKA_SASL_PASSWORD": creds.kafka_reader_password,
        # An internal consumer that also reads the RESTRICTED topics.
        "KAFKA_SIMULATION_USERNAME": KAFKA_SIMULATION_USER,
        "KAFKA_SIMULATION_PASSWORD": creds.kafka_simulation_password,
        # The Pantheon services: the producing Kafka user.
        "PANTHEON_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "PANTHEON_KAFKA_USERNAME": KAFKA_INGEST_USER,
        "PANTHEON_KAFKA_PASSWORD": creds.kafka_ingest_password,
        "PANTHEON_CA_FILE": str(certs.ca_cert),
        "PANTHEON_TLS_CERT_FILE": str(certs.server_cert),
        "PANTHEON_TLS_KEY_FILE": str(certs.server_key),
        # The mesh: its policy, and the identity this shell's tools present
        # (dev-client; the server processes get their own, see server_env).
        "PANTHEON_POLICY_FILE": str(p.policy_file),
        "PANTHEON_PAGE_TOKEN_KEY": creds.page_token_key,
        "PANTHEON_CLIENT_CERT_FILE": str(mesh.identity_files(p, mesh.DEV_CLIENT)[0]),
        "PANTHEON_CLIENT_KEY_FILE": str(mesh.identity_files(p, mesh.DEV_CLIENT)[1]),
        "PANTHEON_IDENTITIES_DIR": str(p.identities),
        "MINIO_ENDPOINT": s.minio_endpoint,
        "MINIO_ROOT_USER": creds.minio_root_user,
        "MINIO_ROOT_PASSWORD": creds.minio_root_password,
        "PANTHEON_S3_ENDPOINT": s.minio_endpoint,
        "PANTHEON_S3_ACCESS_KEY": MINIO_STORAGE_USER,
        "PANTHEON_S3_SECRET_KEY": creds.minio_storage_secret,
        "PANTHEON_GRPC_TARGET": s.grpc_target,
        # The first replica's metrics; each replica serves its own.
        "PANTHEON_METRICS_URL": s.metrics_urls[0],
        "PANTHEON_EVENTS_TOPIC": DATA_STORED.name,
        "PANTHEON_RECORDS_TOPIC": RECORDS.name,
        "PANTHEON_DLQ_TOPIC": DEAD_LETTER.name,
        "PANTHEON_RESTRICTED_EVENTS_TOPIC": RESTRICTED_DATA_STORED.name,
        "PANTHEON_RESTRICTED_RECORDS_TOPIC": RESTRICTED_RECORDS.name,
        "PANTHEON_RESTRICTED_DLQ_TOPIC": RESTRICTED_DEAD_LETTER.name,
        # The REST gateway and its demo API keys (see pantheon/devstack/gateway.py).
        "PANTHEON_GATEWAY_URL": s.gateway_url,
        "PANTHEON_API_KEY": creds.api_key_city,
        "PANTHEON_API_KEY_B": creds.api_key_agency,
        "PANTHEON_API_KEY_READONLY": creds.api_key_viewer,
        "PANTHEON_API_KEYS_FILE": str(p.api_keys_file),
    }


def export_lines(env: dict[str, str]) -> list[str]:
    """`export NAME=value` lines, values quoted for POSIX shells."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


#: Plaintext demo API keys are for clients: no server process gets them (the
#: gateway reads their hashes from PANTHEON_API_KEYS_FILE).
_CLIENT_ONLY = frozenset(
    {
        "PANTHEON_API_KEY",
        "PANTHEON_API_KEY_B",
        "PANTHEON_API_KEY_READONLY",
        # The consumers' Kafka passwords: no server process consumes.
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SIMULATION_PASSWORD",
    }
)


def server_env(s: Settings, identity: str) -> dict[str, str]:
    """The environment of a server process that calls the services as `identity`."""
    merged = {**os.environ, **environment(s)}
    cert, key = mesh.identity_files(s.paths, identity)
    merged.update(PANTHEON_CLIENT_CERT_FILE=str(cert), PANTHEON_CLIENT_KEY_FILE=str(key))
    return {k: v for k, v in merged.items() if k not in _CLIENT_ONLY}
