"""The service's Prometheus metrics (prometheus-client), in a registry of its own per app, served at /metrics.

With several worker processes (PROMETHEUS_MULTIPROC_DIR set), prometheus-client keeps the values in files that
/metrics adds up over the workers.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Routes are labelled by their template, never by a raw path: a scan of random URLs must not create series.
ROUTES = ("/", "/healthz", "/metrics", "/docs", "/openapi.json", "/v1/predict", "/v1/explain", "/v1/model")


class ServiceMetrics:
    def __init__(self, model_id: str, backend: str, device: str):
        self.registry = CollectorRegistry()
        self.requests = Counter("cifake_requests", "HTTP requests by route, method and status code",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("cifake_request_seconds", "Time from request to response, by route", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.images = Counter("cifake_images_scored", "Images scored (unreadable uploads not counted)",
                              registry=self.registry)
        self.verdicts = Counter("cifake_verdicts", "Verdicts given, by verdict", ["verdict"], registry=self.registry)
        self.queue = Gauge("cifake_queue_depth", "Requests waiting for or running inference",
                           multiprocess_mode="livesum", registry=self.registry)
        self.refused = Counter("cifake_busy_refusals", "Requests refused with 503 because the queue was full",
                               registry=self.registry)
        Gauge("cifake_model_info", "The model being served (value 1)", ["model_id", "backend", "device"],
              multiprocess_mode="max", registry=self.registry).labels(model_id, backend, device).set(1)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of /metrics: this process's metrics, or every worker's in multiprocess mode."""
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    @staticmethod
    def route(path: str) -> str:
        if path in ROUTES:
            return path
        return "/static" if path.startswith("/static/") else "other"

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        route = self.route(path)
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def scored(self, verdicts: list[str | None]) -> None:
        given = [v for v in verdicts if v]
        self.images.inc(len(given))
        for verdict in given:
            self.verdicts.labels(verdict).inc()
