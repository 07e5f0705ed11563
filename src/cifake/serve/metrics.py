"""The service's Prometheus metrics (prometheus-client), in a registry of its own per app, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
        self.queue = Gauge("cifake_queue_depth", "Requests waiting for or running inference", registry=self.registry)
        self.refused = Counter("cifake_busy_refusals", "Requests refused with 503 because the queue was full",
                               registry=self.registry)
        Info("cifake_model", "The model being served", registry=self.registry).info(
            {"model_id": model_id, "backend": backend, "device": device})

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
