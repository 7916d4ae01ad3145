"""Prometheus metrics of the services, served over HTTPS.

`serve(listen, tls)` exposes them at https://<listen>/metrics (default
127.0.0.1:9464, `PANTHEON_METRICS_LISTEN`), with the services' own
certificate: plaintext is refused here too.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from pantheon.config import TLSSettings

RPCS = Counter(
    "pantheon_rpc_requests_total", "gRPC calls handled, by method and status code.", ["method", "code"]
)
RPC_SECONDS = Histogram(
    "pantheon_rpc_duration_seconds",
    "Time to answer a gRPC call, by method.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REJECTS = Counter("pantheon_rejected_total", "Calls answered with an error, by stable reason.", ["reason"])
STORED_BYTES = Counter(
    "pantheon_stored_bytes_total", "Bytes written to the object store, by bucket.", ["bucket"]
)
EVENTS = Counter("pantheon_events_published_total", "Events acknowledged by Kafka, by topic.", ["topic"])
DELIVERY_SECONDS = Histogram(
    "pantheon_event_delivery_seconds",
    "Time from queueing an event (with the rest of its call's) to Kafka's acknowledgement.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 15),
)


def serve(listen: str, tls: TLSSettings) -> None:
    """Serve /metrics over mutual TLS in a background thread: like the gRPC
    services, it answers only callers with a certificate of the deployment's
    CA (a scraper presents one), since counters by bucket say how much
    RESTRICTED data arrives."""
    host, _, port = listen.rpartition(":")
    start_http_server(
        int(port),
        addr=host,
        certfile=tls.cert_file,
        keyfile=tls.key_file,
        client_cafile=tls.ca_file,
        client_auth_required=True,
    )
