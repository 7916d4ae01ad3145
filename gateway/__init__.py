"""The HTTPS REST edge of Pantheon (FastAPI): auth, limits, REST to gRPC.

`create_app(GatewaySettings.from_env())` builds the application;
`python -m gateway` serves it over HTTPS.
"""

from gateway.app import create_app
from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
