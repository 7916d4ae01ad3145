"""The REST gateway as a dev-stack process (`python -m gateway`), and its API keys file.

The gateway trusts a keys file of SHA-256 hashes (format in gateway/auth.py);
the plaintext demo keys stay in credentials.json for `scripts/stack env`.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from pantheon.devstack import process
from pantheon.devstack.credentials import API_AGENCY, API_CITY, API_VIEWER, Credentials
from pantheon.devstack.files import write_private
from pantheon.devstack.paths import StackPaths
from pantheon.devstack.settings import Replica

#: Part of the command line; guards against a reused pid (see process.py).
CMDLINE_MARK = "-m gateway"

#: Scopes of the demo principals: a city that ingests and reads everything,
#: an agency limited to weather, reports and hazards, and a read-only viewer
#: that may not read RESTRICTED data.
_DEMO_GRANTS: dict[str, dict[str, object]] = {
    API_CITY: {"scopes": ["ingest", "read"], "data_types": ["*"], "may_read_restricted": True},
    API_AGENCY: {
        "scopes": ["ingest", "read"],
        "data_types": ["weather.*", "report.*", "hazard.*"],
        "may_read_restricted": False,
    },
    API_VIEWER: {"scopes": ["read"], "data_types": ["*"], "may_read_restricted": False},
}


def keys_document(creds: Credentials) -> dict[str, object]:
    """The gateway's keys file for the demo principals: hashes only."""
    entries = []
    for principal, key in creds.api_keys().items():
        entries.append(
            {
                "principal": principal,
                "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                **_DEMO_GRANTS[principal],
            }
        )
    return {"keys": entries}


def write_keys_file(paths: StackPaths, creds: Credentials) -> Path:
    """Write the demo keys, keeping any other keys (`pantheon keys create`)."""
    paths.gateway.mkdir(parents=True, exist_ok=True)
    document = keys_document(creds)
    try:
        existing = json.loads(paths.api_keys_file.read_text()).get("keys", [])
    except (OSError, ValueError, AttributeError):
        existing = []
    others = [e for e in existing if isinstance(e, dict) and e.get("principal") not in _DEMO_GRANTS]
    document["keys"] = [*document["keys"], *others]  # type: ignore[misc]
    write_private(paths.api_keys_file, json.dumps(document, indent=2).encode() + b"\n")
    return paths.api_keys_file


def start(paths: StackPaths, replica: Replica, env: Mapping[str, str]) -> int:
    replica.dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "gateway", "--log-file", str(replica.log)]
    return process.start(
        argv,
        pidfile=replica.pidfile,
        log_file=replica.stdout,
        env={**env, "PANTHEON_GATEWAY_LISTEN": replica.listen},
        cwd=Path(__file__).resolve().parents[2],
    )


def running_pid(paths: StackPaths, replica: Replica) -> int | None:
    return process.running_pid(replica.pidfile, paths.process_marker, (CMDLINE_MARK, str(replica.log)))


def stop(paths: StackPaths, replica: Replica) -> int | None:
    return process.stop(replica.pidfile, paths.process_marker, (CMDLINE_MARK, str(replica.log)))


def is_live(url: str, ca_file: Path, timeout: float = 2.0) -> bool:
    """Whether `GET <url>/healthz` answers 200 over HTTPS verified by the dev CA."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_live(url: str, ca_file: Path, *, timeout: float, still_running: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    gone = 0
    while time.monotonic() < deadline:
        if is_live(url, ca_file):
            return
        # Right after the fork the child still shows the parent's command
        # line, so one miss is not proof that it exited.
        gone = 0 if still_running() else gone + 1
        if gone >= 3:
            raise RuntimeError("the gateway exited during start-up")
        time.sleep(0.2)
    raise TimeoutError(f"the gateway did not answer /healthz within {timeout:.0f}s")
