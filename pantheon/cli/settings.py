"""The `pantheon` command's settings: one typed object read from variables.

The CLI shares the deployment's `PANTHEON_*` names with the services and the
gateway (`eval "$(scripts/stack env)"` sets them for the dev stack), and
reads MinIO's own `MINIO_*` names for `s3-reader`, which acts as MinIO's
root user. Every field is optional here: each command asks for what it
needs with `require`, so `pantheon keys` runs without a gateway URL. A value
that is set but malformed (an `http://` gateway URL) stops any command with
one line naming the variable.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from pantheon.cli.errors import CliError
from pantheon.envconfig import EnvSettings, variable, variables
from pantheon.envconfig.settings import OptionalText, Text
from pantheon.events import topics

HINT = ' (for the dev stack: eval "$(scripts/stack env)")'


def _https(value: object) -> object:
    if isinstance(value, str) and value and not value.startswith("https://"):
        raise ValueError("expected an https:// URL (the gateway serves HTTPS only)")
    return value


class CliSettings(EnvSettings):
    """Where the CLI's commands find the gateway, the services, the files and MinIO."""

    #: The REST edge (`ingest`, `records`, `search`, `get`).
    gateway_url: Annotated[OptionalText, BeforeValidator(_https)] = variable(
        "PANTHEON_GATEWAY_URL", default=None
    )
    #: The API key sent to the gateway.
    api_key: OptionalText = variable("PANTHEON_API_KEY", default=None, repr=False)
    #: The deployment's CA (gateway, services, MinIO); the system's CAs for the gateway without it.
    ca_file: OptionalText = variable("PANTHEON_CA_FILE", default=None)
    #: The services (`reconcile`), reached with the workload identity below.
    grpc_target: OptionalText = variable("PANTHEON_GRPC_TARGET", default=None)
    grpc_authority: OptionalText = variable("PANTHEON_GRPC_AUTHORITY", default=None)
    client_cert_file: OptionalText = variable("PANTHEON_CLIENT_CERT_FILE", default=None)
    client_key_file: OptionalText = variable("PANTHEON_CLIENT_KEY_FILE", default=None)
    #: The files `keys` and `identity` edit (their `--file`/`--policy-file` win).
    api_keys_file: OptionalText = variable("PANTHEON_API_KEYS_FILE", default=None)
    policy_file: OptionalText = variable("PANTHEON_POLICY_FILE", default=None)
    #: Where `identity create` writes certificates.
    identities_dir: Text = variable("PANTHEON_IDENTITIES_DIR", default=".")
    #: Where `tail` dead-letters what it cannot decode.
    dlq_topic: Text = variable("PANTHEON_DLQ_TOPIC", default=topics.DEAD_LETTER.name)
    #: MinIO's endpoint and root user, for `s3-reader` (their flags win).
    minio_endpoint: OptionalText = variable("MINIO_ENDPOINT", default=None)
    minio_root_user: OptionalText = variable("MINIO_ROOT_USER", default=None)
    minio_root_password: OptionalText = variable("MINIO_ROOT_PASSWORD", default=None, repr=False)

    def require(self, name: str) -> str:
        """The value of field `name`, or a CliError naming its variable."""
        value = getattr(self, name)
        if not value:
            (var,) = variables(type(self).model_fields[name])
            raise CliError(f"{var} is not set{HINT}")
        return str(value)
