"""The counters and histograms every process writes, and the page a scrape reads.

prometheus_client's multiprocess mode (docs/metrics.md): each process of the host (gunicorn's
workers, Celery's worker processes) writes its samples to files of its own in
PROMETHEUS_MULTIPROC_DIR, and a scrape of any web worker adds up every file there, so a counter
moved by a Celery worker is seen by the web. settings.py names the directory in the environment
before anything imports prometheus_client, which decides the mode when first imported.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# Where the metrics are registered when the mode is not multiprocess (prometheus_client was
# imported before settings named the directory): then a scrape sees this process alone.
LOCAL = CollectorRegistry(auto_describe=True)


def multiprocess() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not multiprocess():
    logger.error(
        "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: metrics are "
        "this process's only"
    )

# Seconds: from a fast JSON read to an export of a year of readings.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "smartmeter_http_requests",
    "HTTP requests answered, by view (the URL pattern's name, never the raw path), method and status.",
    ["view", "method", "status"],
    registry=LOCAL,
)
HTTP_LATENCY = Histogram(
    "smartmeter_http_request_duration_seconds",
    "Time from the request reaching the first middleware to its response, by view.",
    ["view"],
    buckets=LATENCY_BUCKETS,
    registry=LOCAL,
)
CELERY_TASKS = Counter(
    "smartmeter_celery_tasks",
    "Celery tasks finished, by task name and state (succeeded, failed, retried).",
    ["task", "state"],
    registry=LOCAL,
)
TOPUPS_CREDITED = Counter(
    "smartmeter_topups_credited",
    "Top-ups credited to a balance (committed), by utility and channel.",
    ["utility", "channel"],
    registry=LOCAL,
)
PUSHES = Counter(
    "smartmeter_pushes",
    "Push messages to devices, by the alert's utility and outcome: sent, token_removed (FCM said "
    "the token is dead), retry, failed, not_configured.",
    ["utility", "outcome"],
    registry=LOCAL,
)
SMS = Counter(
    "smartmeter_sms",
    "SMS attempts, sent or failed (a retry is another attempt), by utility (none: a sign-in "
    "code, which belongs to a person) and the number's country.",
    ["utility", "country", "outcome"],
    registry=LOCAL,
)


def page(*, accept: str, extra: list) -> tuple[bytes, str]:
    """The text a scrape gets (Prometheus text, or OpenMetrics when asked for): every process's
    counters and histograms, and the collectors in `extra` (figures read at scrape time)."""
    # Not auto-described: registering a collector would otherwise run it once more.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Declared(MultiProcessCollector(None) if multiprocess() else LOCAL))
    for collector in extra:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class _Declared:
    """The samples of `inner`, and every metric of LOCAL named even before any process moved
    it (the multiprocess files hold only what moved): a dashboard's query of a counter that is
    still zero finds its name, and Prometheus its type."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def collect(self):
        found = list(self.inner.collect())
        named = {metric.name for metric in found}
        for metric in LOCAL.collect():
            if metric.name not in named:
                yield Metric(metric.name, metric.documentation, metric.type)
        yield from found
