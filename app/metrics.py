"""Prometheus metrics. Each app instance owns its registry, so several apps (tests) can coexist."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "captioner_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "captioner_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "captioner_batch_size",
            "Images per encoder batch.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "captioner_queue_depth", "Images waiting for the model.", registry=self.registry
        )
        self.inference_latency = Histogram(
            "captioner_inference_duration_seconds",
            "Model time per batch, by stage (encode, generate).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "captioner_images",
            "Uploaded images that reached decoding, by outcome (ok or an error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "captioner_ready", "1 when the model is loaded and serving.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
