"""Prometheus metrics of one broker process, and the per-request timing behind them.

Each remote call is timed once; the duration goes to its histogram and to the request's
``Timing``, which the answer carries as a ``Server-Timing`` header, so a client (the bench) sees
how much of its wait was Defguard, Graph, and the broker itself.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Timing:
    """Seconds one request spent waiting for each remote service."""

    defguard: float = 0.0
    graph: float = 0.0
    authority: float = 0.0

    def header(self, total: float) -> str:
        """``Server-Timing`` (W3C): the waits and the broker's own share, in milliseconds."""
        own = max(0.0, total - self.defguard - self.graph - self.authority)
        parts = [
            ("defguard", self.defguard),
            ("graph", self.graph),
            ("authority", self.authority),
            ("broker", own),
            ("total", total),
        ]
        return ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in parts)


current_timing: contextvars.ContextVar[Timing | None] = contextvars.ContextVar(
    "dgprov_broker_timing", default=None
)


_shared_directory: str | None = None


def share_between_workers(directory: str) -> None:
    """In a ``--workers`` process, before any metric exists: keep the values in ``directory``
    (prometheus_client's multiprocess mode), so every worker's /metrics shows all workers'
    counts, whichever one a scrape reaches."""
    global _shared_directory
    _shared_directory = directory
    # prometheus_client reads the directory from this variable when it creates a value.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def add_to_request(service: str, seconds: float) -> None:
    timing = current_timing.get()
    if timing is not None:
        setattr(timing, service, getattr(timing, service) + seconds)


class BrokerMetrics:
    """The process's registry: requests by outcome, request and remote-call latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dgprov_broker_requests",
            "Provisioning requests by outcome (provisioned or the error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dgprov_broker_request_duration_seconds",
            "Time to answer a provisioning request.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.calls = Histogram(
            "dgprov_broker_remote_call_duration_seconds",
            "Calls to Defguard, Microsoft Graph and the Entra authority.",
            ["service", "call"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    @contextmanager
    def timed(self, service: str, call: str, *, request: bool = True) -> Iterator[None]:
        """Time one remote call (``service`` is defguard, graph or authority) for its histogram
        and, unless ``request`` is false, for the request's ``Server-Timing``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.calls.labels(service, call).observe(elapsed)
            if request:
                add_to_request(service, elapsed)

    @staticmethod
    @contextmanager
    def waiting(service: str) -> Iterator[None]:
        """Count what a request waits for ``service``'s data toward its ``Server-Timing``,
        whether it reads the data itself or waits for another request reading it (a cache
        shared by concurrent requests); the read itself goes to the histogram only."""
        started = time.perf_counter()
        try:
            yield
        finally:
            add_to_request(service, time.perf_counter() - started)

    def observe(self, outcome: str, seconds: float) -> None:
        self.requests.labels(outcome).inc()
        self.latency.labels(outcome).observe(seconds)

    def exposition(self) -> bytes:
        if _shared_directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=_shared_directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
