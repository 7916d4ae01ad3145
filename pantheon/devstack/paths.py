"""Where the dev stack keeps things: a shared cache and a per-checkout state dir.

The cache (`${PANTHEON_CACHE_DIR:-~/.cache/pantheon}`) holds downloads and
builds that any checkout on this machine can reuse, so a fresh clone starts in
seconds. The state dir (`${PANTHEON_STACK_DIR:-<repo>/.stack}`) holds what
belongs to one running stack: certificates, credentials, data, logs, pidfiles.
Tests point PANTHEON_STACK_DIR elsewhere to run an isolated second stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pantheon.devstack.variables import StackVariables

REPO_ROOT: Path = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The machine-wide download/build cache."""
    raw = StackVariables.from_env().cache_dir or str(Path.home() / ".cache" / "pantheon")
    return Path(raw).expanduser().resolve()


def state_dir() -> Path:
    """The state dir of this stack (absolute: it is matched against process cmdlines)."""
    raw = StackVariables.from_env().stack_dir or str(REPO_ROOT / ".stack")
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class StackPaths:
    """Every file and directory of one stack, derived from its state dir."""

    state: Path
    cache: Path

    @classmethod
    def from_env(cls) -> StackPaths:
        return cls(state=state_dir(), cache=cache_dir())

    @property
    def process_marker(self) -> str:
        """What our processes' command lines contain: the state dir plus a slash.

        The trailing slash keeps `/x/.stack` from matching `/x/.stack2/...`.
        """
        return str(self.state) + "/"

    # -- shared by both servers -------------------------------------------
    @property
    def certs(self) -> Path:
        return self.state / "certs"

    @property
    def credentials(self) -> Path:
        return self.state / "credentials.json"

    @property
    def identities(self) -> Path:
        """Workload identities of the mesh: `<name>.crt` and `<name>.key`."""
        return self.certs / "identities"

    @property
    def policy_file(self) -> Path:
        """The mesh policy the services enforce (pantheon/policy.py)."""
        return self.state / "policy.json"

    @property
    def cache_logs(self) -> Path:
        return self.cache / "logs"

    @property
    def profile_file(self) -> Path:
        """The profile (`single` or `ha`) this state dir was brought up with."""
        return self.state / "profile"

    # -- per component (the nodes' own dirs: settings.Settings) -------------

    @property
    def kafka(self) -> Path:
        return self.state / "kafka"

    @property
    def minio(self) -> Path:
        return self.state / "minio"

    @property
    def haproxy(self) -> Path:
        """The HA profile's load balancer: config, pidfile, log."""
        return self.state / "haproxy"

    @property
    def services(self) -> Path:
        return self.state / "services"

    @property
    def gateway(self) -> Path:
        return self.state / "gateway"

    @property
    def api_keys_file(self) -> Path:
        """The gateway's API keys (all replicas): SHA-256 hashes only, never the keys."""
        return self.gateway / "api-keys.json"
