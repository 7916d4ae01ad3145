"""`/docs` renders in a real headless Chromium that can reach nothing but the gateway.

The browser (Debian's `chromium`, installed by scripts/bootstrap) gets:
- no network beyond the gateway: every request goes to a proxy on a loopback
  port where nothing listens, except the gateway's own host:port; host names
  resolve to nothing (`~NOTFOUND`), so not even a DNS query leaves; QUIC is off;
- trust in the gateway only: the SPKI hash of the certificate the gateway
  presents, after Python has verified that certificate against the dev CA
  (no blanket "ignore certificate errors");
- a net log, read afterwards: every TCP connection it opened went to the
  gateway or to the dead proxy, and everything the page asked for was on the
  gateway's origin.

`--dump-dom` with a virtual-time budget waits until the page has settled
(virtual time stands still while fetches are pending), so the DOM it prints
shows whether Swagger UI loaded its script, fetched /openapi.json and drew
every operation. The in-process half is tests/unit/test_gateway_docs.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.gateway_support import Gateway, tls
from tests.integration.support import free_ports

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "chromium"
#: Virtual milliseconds the page may use; real time is a few seconds.
VIRTUAL_TIME_BUDGET_MS = 30_000
#: Chromium's IPv6 reachability check connect()s a UDP socket to this address
#: (Google's public DNS) to ask the kernel for a route; it sends no datagram.
IPV6_PROBE = "[2001:4860:4860::8888]:443"


def spki_sha256(host: str, port: int, ca_file: str) -> str:
    """Base64 SHA-256 of the public key the gateway presents, once verified against the dev CA."""
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        tls(ca_file).wrap_socket(raw, server_hostname=host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    pem = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
        input=der,
        capture_output=True,
        check=True,
    ).stdout.decode()
    spki = base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def run_chromium(url: str, pin: str, workdir: Path) -> tuple[str, dict[str, Any]]:
    """Load `url` headless with no network beyond its host:port; the rendered DOM and the net log."""
    executable = shutil.which(CHROMIUM)
    if executable is None:
        pytest.fail("chromium is not installed: scripts/bootstrap installs it (apt-get install chromium)")
    target = urlsplit(url)
    (dead_port,) = free_ports(1)
    netlog = workdir / "netlog.json"
    argv = [
        executable,
        "--headless",
        "--disable-gpu",
        f"--user-data-dir={workdir / 'profile'}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-quic",
        f"--proxy-server=http://127.0.0.1:{dead_port}",
        # Only the gateway bypasses the dead proxy: not even other loopback ports.
        f"--proxy-bypass-list=<-loopback>;{target.hostname}:{target.port}",
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {target.hostname}",
        f"--ignore-certificate-errors-spki-list={pin}",
        f"--log-net-log={netlog}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--dump-dom",
        url,
    ]
    if os.geteuid() == 0:
        argv.insert(2, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(workdir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(netlog.read_text())


def net_log_params(netlog: dict[str, Any], kind: str, key: str) -> list[dict[str, Any]]:
    """The parameters of every net-log event of type `kind` that carry `key`."""
    code = netlog["constants"]["logEventTypes"][kind]
    return [
        event["params"]
        for event in netlog["events"]
        if event["type"] == code and key in event.get("params", {})
    ]


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback


@pytest.fixture(scope="module")
def rendered(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any]]:
    gateway = Gateway.from_env(stack_env)
    target = urlsplit(gateway.url)
    assert target.hostname and target.port
    pin = spki_sha256(target.hostname, target.port, gateway.ca_file)
    return run_chromium(f"{gateway.url}/docs", pin, tmp_path_factory.mktemp("chromium"))


def test_the_docs_list_every_operation_with_no_network_beyond_the_gateway(
    stack_env: dict[str, str], rendered: tuple[str, dict[str, Any]]
) -> None:
    dom, _ = rendered
    with Gateway.from_env(stack_env).client(None) as client:
        spec = client.get("/openapi.json").json()
    assert 'class="swagger-ui' in dom, dom[:2000]
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]
    assert {"/v1/objects", "/v1/records"} <= {path for path, _, _ in operations}
    for path, method, operation in operations:
        # Swagger UI draws each operation as a block with this id, its path and summary.
        tag = operation["tags"][0]
        assert f'id="operations-{tag}-{operation["operationId"]}"' in dom, (method, path)
        assert f'data-path="{html.escape(path)}"' in dom, path
        assert html.escape(operation["summary"], quote=False) in dom, operation["summary"]
    assert "Pantheon REST API" in dom


def test_the_browser_reached_only_the_gateway(
    stack_env: dict[str, str], rendered: tuple[str, dict[str, Any]]
) -> None:
    _, netlog = rendered
    origin = Gateway.from_env(stack_env).url
    target = urlsplit(origin)
    connects = [params["address"] for params in net_log_params(netlog, "TCP_CONNECT_ATTEMPT", "address")]
    assert f"{target.hostname}:{target.port}" in connects
    assert [address for address in connects if not is_loopback(address)] == []
    udp = [params["address"] for params in net_log_params(netlog, "UDP_CONNECT", "address")]
    assert [address for address in udp if not is_loopback(address) and address != IPV6_PROBE] == []
    # What the page itself asked for (the browser's own requests have no
    # initiator, and went to the dead proxy): all of it on the gateway.
    asked = {
        params["url"]
        for params in net_log_params(netlog, "URL_REQUEST_START_JOB", "url")
        if params.get("initiator") == origin
    }
    assert [url for url in asked if not url.startswith(f"{origin}/")] == []
    assert {
        f"{origin}/docs/assets/swagger-ui-bundle.js",
        f"{origin}/docs/assets/swagger-ui.css",
        f"{origin}/openapi.json",
    } <= asked
