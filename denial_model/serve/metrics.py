"""Prometheus metrics of the service: requests by route and status, latency per route, lines
scored and rejected, the model being served. One registry per app (tests start several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "denial_model_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "denial_model_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.lines = Counter(
            "denial_model_lines",
            "Claim lines by route and outcome (scored, checked, rejected)",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.model = Gauge(
            "denial_model_model_info",
            "The model being served (value 1)",
            ["version", "sha256"],
            registry=self.registry,
        )

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def counted(self, route: str, outcome: str, n: int) -> None:
        if n:
            self.lines.labels(route, outcome).inc(n)

    def serving(self, version: str, sha256: str) -> None:
        self.model.clear()
        self.model.labels(version, sha256).set(1)

    def text(self) -> bytes:
        return generate_latest(self.registry)
