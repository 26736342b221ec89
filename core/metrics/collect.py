"""The figures read at scrape time (core.metrics.figures), as Prometheus metric families."""

from __future__ import annotations

import time

from prometheus_client.core import GaugeMetricFamily

from core.metrics.figures import Figures, figures_kept


class FiguresCollector:
    """Gauges of the figures, ages measured from now (the figures may be a few seconds old)."""

    def collect(self):
        return families(figures_kept(), now=time.time())


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"smartmeter_{name}", documentation, labels=labels or [])


def families(figures: Figures, *, now: float) -> list[GaugeMetricFamily]:
    sources = _gauge(
        "metrics_source_up",
        "1 when the scrape could read the source (database, broker, replicas), else 0.",
        ["source"],
    )
    for source, up in sorted(figures.sources.items()):
        sources.add_metric([source], up)

    depth = _gauge("celery_queue_depth", "Tasks waiting in the broker's queue.", ["queue"])
    for queue, count in figures.queues.items():
        depth.add_metric([queue], count)

    newest = _gauge(
        "readings_newest_age_seconds",
        "Age of the newest reading's interval start among the utility's meters (recorded to "
        "within 30 minutes).",
        ["utility"],
    )
    batch = _gauge(
        "ingest_newest_batch_age_seconds",
        "Time since the utility's head-end last delivered a batch of readings.",
        ["utility"],
    )
    silent = _gauge(
        "meters_not_reporting",
        "Meters in service with no reading for 24 hours (counted up to METRICS_COUNT_CAP).",
        ["utility"],
    )
    backlog = _gauge(
        "charging_backlog_meter_days",
        "Prepaid meter-days changed and not yet charged (counted up to METRICS_COUNT_CAP).",
        ["utility"],
    )
    backlog_age = _gauge(
        "charging_backlog_oldest_age_seconds",
        "Age of the oldest change waiting to be charged; absent when nothing waits.",
        ["utility"],
    )
    pending = _gauge("topups_pending", "Top-ups waiting for the gateway's answer.", ["utility"])
    failed = _gauge("topups_failed_24h", "Top-ups failed in the last 24 hours.", ["utility"])
    for one in figures.utilities.values():
        label = [one.code]
        if one.newest_reading is not None:
            newest.add_metric(label, max(now - one.newest_reading, 0.0))
        if one.newest_batch is not None:
            batch.add_metric(label, max(now - one.newest_batch, 0.0))
        silent.add_metric(label, one.not_reporting)
        backlog.add_metric(label, one.backlog)
        if one.backlog_oldest is not None:
            backlog_age.add_metric(label, max(now - one.backlog_oldest, 0.0))
        pending.add_metric(label, one.topups_pending)
        failed.add_metric(label, one.topups_failed)

    charging = _gauge(
        "charging_lag_seconds",
        "How far behind now the charging cursors' oldest position is; absent before every "
        "shard has run.",
    )
    if figures.charging_position is not None:
        charging.add_metric([], max(now - figures.charging_position, 0.0))

    lag = _gauge("replica_lag_seconds", "Replay lag of each read replica, where known.", ["alias"])
    replica_up = _gauge(
        "replica_up", "1 when the replica answered its lag query, else 0.", ["alias"]
    )
    for alias, seconds in sorted(figures.replicas.items()):
        replica_up.add_metric([alias], 0 if seconds is None else 1)
        if seconds is not None:
            lag.add_metric([alias], seconds)

    return [
        sources,
        depth,
        newest,
        batch,
        silent,
        backlog,
        backlog_age,
        pending,
        failed,
        charging,
        lag,
        replica_up,
    ]
