"""Dev credentials: generated randomly on the first `up`, kept in the state dir.

Nothing here is a fixed password: each state dir gets its own secrets, stored
as JSON with mode 0600. They stay stable across `down`/`up` (and `down
--purge`, which wipes data only), because the Kafka SCRAM users are written
into the storage at format time and must keep matching. Secrets added in a
later version (a new Kafka user, an API key) are generated into an existing
file on `up`, which also creates such users on an already formatted broker.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from pantheon.devstack.files import write_private

log = logging.getLogger(__name__)

KAFKA_ADMIN_USER = "admin"
KAFKA_INGEST_USER = "pantheon-ingest"
KAFKA_READER_USER = "pantheon-reader"
#: An internal consumer holding the RESTRICTED grant (the twin's simulation engine).
KAFKA_SIMULATION_USER = "simulation-engine"
MINIO_STORAGE_USER = "pantheon-storage"
MINIO_KMS_KEY_NAME = "pantheon-dev"

#: The demo principals of the REST gateway (each a source), in the order of
#: PANTHEON_API_KEY, PANTHEON_API_KEY_B and PANTHEON_API_KEY_READONLY.
API_CITY = "demo-city"
API_AGENCY = "demo-agency"
API_VIEWER = "demo-viewer"


def _api_key() -> str:
    # A recognisable prefix helps secret scanners; 32 random bytes follow.
    return "pantheon_" + secrets.token_urlsafe(32)


def _token_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _password() -> str:
    # URL-safe alphabet: no quoting trouble in JAAS configs, StorageTool's
    # --add-scram syntax or shell exports; 32 chars fits MinIO's 8..40 limit.
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Credentials:
    kafka_admin_password: str
    kafka_ingest_password: str
    kafka_reader_password: str
    minio_root_user: str
    minio_root_password: str
    minio_storage_secret: str
    minio_kms_secret_key: str  # "<name>:<base64 of 32 bytes>", MinIO's MINIO_KMS_SECRET_KEY
    # API keys of the gateway's demo principals. Added after the first
    # release of this file: an older credentials.json gets them on `up`.
    api_key_city: str = ""
    api_key_agency: str = ""
    api_key_viewer: str = ""
    # Kafka users added later (one per consuming component): an older
    # credentials.json gets their passwords on `up`, and `up` creates the
    # users on a broker formatted without them.
    kafka_simulation_password: str = ""
    # The services' key for sealing search page tokens (base64 of 32 bytes).
    page_token_key: str = ""

    @classmethod
    def generate(cls) -> Credentials:
        kms = base64.b64encode(secrets.token_bytes(32)).decode()
        return cls(
            kafka_admin_password=_password(),
            kafka_ingest_password=_password(),
            kafka_reader_password=_password(),
            minio_root_user="pantheon-root-" + secrets.token_hex(4),
            minio_root_password=_password(),
            minio_storage_secret=_password(),
            minio_kms_secret_key=f"{MINIO_KMS_KEY_NAME}:{kms}",
            api_key_city=_api_key(),
            api_key_agency=_api_key(),
            api_key_viewer=_api_key(),
            kafka_simulation_password=_password(),
            page_token_key=_token_key(),
        )

    def api_keys(self) -> dict[str, str]:
        """Demo principal -> its API key (plaintext; only its hash goes to the gateway)."""
        return {API_CITY: self.api_key_city, API_AGENCY: self.api_key_agency, API_VIEWER: self.api_key_viewer}

    def with_api_keys(self) -> Credentials:
        """These credentials with any missing API key generated."""
        return replace(
            self,
            api_key_city=self.api_key_city or _api_key(),
            api_key_agency=self.api_key_agency or _api_key(),
            api_key_viewer=self.api_key_viewer or _api_key(),
        )

    def upgraded(self) -> Credentials:
        """These credentials with every secret added after the first release generated."""
        return replace(
            self.with_api_keys(),
            kafka_simulation_password=self.kafka_simulation_password or _password(),
            page_token_key=self.page_token_key or _token_key(),
        )

    def kafka_scram_users(self) -> dict[str, str]:
        """Every SCRAM user of the broker, name -> password: written at format time,
        and (except admin) created or reset by `up` (kafka_admin.ensure_users)."""
        return {
            KAFKA_ADMIN_USER: self.kafka_admin_password,
            KAFKA_INGEST_USER: self.kafka_ingest_password,
            KAFKA_READER_USER: self.kafka_reader_password,
            KAFKA_SIMULATION_USER: self.kafka_simulation_password,
        }


def load(path: Path) -> Credentials | None:
    """The stored credentials, or None before the first `up`."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    required = {f.name for f in fields(Credentials) if f.default is MISSING}
    missing = required - raw.keys()
    if missing:
        raise RuntimeError(f"{path} lacks {sorted(missing)}; remove the state dir and run `up` again")
    names = {f.name for f in fields(Credentials)}
    return Credentials(**{k: raw[k] for k in names if k in raw})


def load_or_create(path: Path) -> Credentials:
    """Load the stack's credentials, generating them on the first call."""
    existing = load(path)
    if existing is not None:
        upgraded = existing.upgraded()
        if upgraded != existing:
            log.info("adding newer credentials (API keys, Kafka users) to %s", path)
            write_private(path, json.dumps(asdict(upgraded), indent=2).encode() + b"\n")
        return upgraded
    log.info("generating dev credentials in %s", path)
    creds = Credentials.generate()
    write_private(path, json.dumps(asdict(creds), indent=2).encode() + b"\n")
    return creds
