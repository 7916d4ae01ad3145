"""Prometheus metrics of the gateway, in a registry of their own per app.

Routes are labelled by their template (`/v1/objects/{id}`), never by the
raw path, so the number of series stays fixed whatever clients send.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Label for requests that matched no route (404s, scans).
UNMATCHED = "unmatched"

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Request counts, latency, bytes received and requests in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pantheon_gateway_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "pantheon_gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "pantheon_gateway_request_body_bytes",
            "Request body bytes received, by route template.",
            ("route",),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pantheon_gateway_requests_in_flight",
            "Requests being handled now.",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float, body_bytes: int) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if body_bytes:
            self.bytes_in.labels(route).inc(body_bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)
